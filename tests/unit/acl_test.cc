// POSIX ACLs: the xattr format and the mode <-> ACL rules (core/posix_acl.h),
// and the engine keeping them (core/acl_fs.cc): a set access ACL sets the
// mode, chmod rewrites the ACL, a default ACL is inherited (and the umask
// is then ignored), invalid values are refused, and all of it is stored.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <gtest/gtest.h>

#include "core/posix_acl.h"
#include "tests/unit/engine_fixture.h"

namespace stablefs {
namespace {

// user::rwx user:1000:r-x group::r-- mask::r-x other::---
Acl named_user_acl() {
  return {{kAclUserObj, 7, kAclUndefinedId}, {kAclUser, 5, 1000},
          {kAclGroupObj, 4, kAclUndefinedId}, {kAclMask, 5, kAclUndefinedId},
          {kAclOther, 0, kAclUndefinedId}};
}
Acl base_acl(uint32_t mode) {
  return {{kAclUserObj, uint16_t((mode >> 6) & 7), kAclUndefinedId},
          {kAclGroupObj, uint16_t((mode >> 3) & 7), kAclUndefinedId},
          {kAclOther, uint16_t(mode & 7), kAclUndefinedId}};
}

TEST(PosixAclFormat, EncodesAndDecodesTheKernelsLayout) {
  std::string v = encode_acl(named_user_acl());
  ASSERT_EQ(v.size(), 4u + 5 * 8);
  EXPECT_EQ(uint8_t(v[0]), 2) << "version 2, little-endian";
  EXPECT_EQ(uint8_t(v[4 + 8]), kAclUser);
  EXPECT_EQ(uint8_t(v[4 + 8 + 4]), 1000 & 0xff);
  auto back = decode_acl(v);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, named_user_acl());
}

TEST(PosixAclFormat, RefusesWhatTheKernelCallsInvalid) {
  auto refused = [](Acl acl) { return decode_acl(encode_acl(acl)).error() == EINVAL; };
  Acl a = named_user_acl();
  a.erase(a.begin() + 3);  // named entry without a mask
  EXPECT_TRUE(refused(a));
  a = named_user_acl();
  std::swap(a[0], a[1]);  // out of order
  EXPECT_TRUE(refused(a));
  a = named_user_acl();
  a.insert(a.begin() + 2, {kAclUser, 1, 1000});  // the same uid twice
  EXPECT_TRUE(refused(a));
  a = base_acl(0644);
  a.pop_back();  // no OTHER
  EXPECT_TRUE(refused(a));
  a = base_acl(0644);
  a[0].perm = 8;
  EXPECT_TRUE(refused(a));
  a = base_acl(0644);
  a[1].tag = 0x40;
  EXPECT_TRUE(refused(a));
  std::string v = encode_acl(base_acl(0644));
  v[0] = 1;  // version
  EXPECT_EQ(decode_acl(v).error(), EINVAL);
  EXPECT_EQ(decode_acl(v.substr(0, 7)).error(), EINVAL) << "torn entry";
  EXPECT_EQ(decode_acl("").error(), EINVAL);
  auto empty = decode_acl(encode_acl({}));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(PosixAclRules, ModeBitsShowTheMaskAsGroup) {
  bool equivalent = true;
  EXPECT_EQ(acl_mode_bits(named_user_acl(), &equivalent), 0750u);
  EXPECT_FALSE(equivalent);
  EXPECT_EQ(acl_mode_bits(base_acl(0641), &equivalent), 0641u);
  EXPECT_TRUE(equivalent);
}

TEST(PosixAclRules, ChmodRewritesOwnerMaskAndOther) {
  Acl a = named_user_acl();
  acl_chmod(a, 0604);
  EXPECT_EQ(a[0].perm, 6);
  EXPECT_EQ(a[1].perm, 5) << "named entries keep their permissions";
  EXPECT_EQ(a[2].perm, 4) << "with a mask, the group entry is not the group bits";
  EXPECT_EQ(a[3].perm, 0);
  EXPECT_EQ(a[4].perm, 4);
}

TEST(PosixAclRules, CreateMasksTheDefaultAclAndTheModeByEachOther) {
  Acl a = named_user_acl();
  bool equivalent = true;
  EXPECT_EQ(acl_create_masked(a, S_IFREG | 0666, &equivalent), uint32_t(S_IFREG | 0640));
  EXPECT_FALSE(equivalent);
  EXPECT_EQ(a[0].perm, 6);
  EXPECT_EQ(a[3].perm, 4) << "mask & group bits of the mode";
  a = base_acl(0750);
  EXPECT_EQ(acl_create_masked(a, S_IFDIR | 0777, &equivalent), uint32_t(S_IFDIR | 0750));
  EXPECT_TRUE(equivalent);
}

class AclEngine : public EngineTest {
 protected:
  uint32_t mode_of(uint64_t ino) { return fs_->getattr(ino)->mode & 07777; }
  Acl acl_of(uint64_t ino, std::string_view name) {
    auto v = fs_->getxattr(ino, name);
    if (!v.ok()) return {};
    auto a = decode_acl(*v);
    EXPECT_TRUE(a.ok());
    return a.ok() ? *a : Acl{};
  }
};

TEST_F(AclEngine, SettingAnAccessAclSetsTheModeAndIsStored) {
  mount();
  uint64_t f = create("f");
  ASSERT_TRUE(fs_->setxattr(f, kAclAccessXattr, encode_acl(named_user_acl()), 0).ok());
  EXPECT_EQ(mode_of(f), 0750u);
  unmount();
  mount();
  EXPECT_EQ(acl_of(f, kAclAccessXattr), named_user_acl());
  EXPECT_EQ(mode_of(f), 0750u);
  auto names = fs_->listxattr(f);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::string(kAclAccessXattr) + '\0');
}

TEST_F(AclEngine, AnAclTheModeSaysAllOfIsNotStored) {
  mount();
  uint64_t f = create("f");
  ASSERT_TRUE(fs_->setxattr(f, kAclAccessXattr, encode_acl(named_user_acl()), 0).ok());
  ASSERT_TRUE(fs_->setxattr(f, kAclAccessXattr, encode_acl(base_acl(0604)), 0).ok());
  EXPECT_EQ(mode_of(f), 0604u);
  EXPECT_EQ(fs_->getxattr(f, kAclAccessXattr).error(), ENODATA);
}

TEST_F(AclEngine, ChmodRewritesTheStoredAcl) {
  mount();
  uint64_t f = create("f");
  ASSERT_TRUE(fs_->setxattr(f, kAclAccessXattr, encode_acl(named_user_acl()), 0).ok());
  SetAttr sa;
  sa.mode = 0604;
  ASSERT_TRUE(fs_->setattr(f, sa).ok());
  Acl want = named_user_acl();
  acl_chmod(want, 0604);
  EXPECT_EQ(acl_of(f, kAclAccessXattr), want);
  EXPECT_EQ(mode_of(f), 0604u);
}

TEST_F(AclEngine, InvalidAclsAndDefaultAclsOnFilesAreRefused) {
  mount();
  uint64_t f = create("f");
  Acl no_mask = named_user_acl();
  no_mask.erase(no_mask.begin() + 3);
  EXPECT_EQ(fs_->setxattr(f, kAclAccessXattr, encode_acl(no_mask), 0).error(), EINVAL);
  EXPECT_EQ(fs_->setxattr(f, kAclDefaultXattr, encode_acl(base_acl(0755)), 0).error(), EACCES);
  EXPECT_EQ(mode_of(f), 0644u);
  EXPECT_EQ(fs_->setxattr(f, "system.other", "x", 0).error(), EOPNOTSUPP);
}

TEST_F(AclEngine, NewNodesInheritTheDefaultAclAndIgnoreTheUmask) {
  mount();
  auto d = fs_->mkdir(kRootIno, "d", 0755, {});
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE(fs_->setxattr(d->ino, kAclDefaultXattr, encode_acl(named_user_acl()), 0).ok());
  Creds c{0, 0, 077};
  auto f = fs_->mknod(d->ino, "f", S_IFREG | 0666, 0, c);
  auto sub = fs_->mkdir(d->ino, "sub", 0777, c);
  ASSERT_TRUE(f.ok() && sub.ok());
  EXPECT_EQ(f->mode & 07777, 0640u) << "masked by the ACL, not by umask 077";
  Acl want_f = named_user_acl();
  acl_create_masked(want_f, S_IFREG | 0666, nullptr);
  EXPECT_EQ(acl_of(f->ino, kAclAccessXattr), want_f);
  EXPECT_EQ(fs_->getxattr(f->ino, kAclDefaultXattr).error(), ENODATA);
  EXPECT_EQ(sub->mode & 07777, 0750u);
  EXPECT_EQ(acl_of(sub->ino, kAclDefaultXattr), named_user_acl()) << "directories pass it on";
  unmount();
  mount();
  EXPECT_EQ(acl_of(f->ino, kAclAccessXattr), want_f);
}

TEST_F(AclEngine, WithoutADefaultAclTheUmaskApplies) {
  mount();
  auto f = fs_->mknod(kRootIno, "f", S_IFREG | 0666, 0, Creds{0, 0, 027});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->mode & 07777, 0640u);
  auto l = fs_->symlink(kRootIno, "l", "f", Creds{0, 0, 027});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->mode & 07777, 0777u) << "symlinks ignore the umask";
}

TEST_F(AclEngine, RemovingAnAclKeepsTheModeAndAbsentOnesAreNoError) {
  mount();
  uint64_t f = create("f");
  ASSERT_TRUE(fs_->setxattr(f, kAclAccessXattr, encode_acl(named_user_acl()), 0).ok());
  ASSERT_TRUE(fs_->removexattr(f, kAclAccessXattr).ok());
  EXPECT_EQ(fs_->getxattr(f, kAclAccessXattr).error(), ENODATA);
  EXPECT_EQ(mode_of(f), 0750u);
  EXPECT_TRUE(fs_->removexattr(f, kAclAccessXattr).ok());
  EXPECT_TRUE(fs_->removexattr(f, kAclDefaultXattr).ok());
}

TEST_F(AclEngine, KillSgidDropsSetgidFromTheModeTheAclSets) {
  mount();
  uint64_t f = create("f");
  SetAttr sa;
  sa.mode = 02755;
  ASSERT_TRUE(fs_->setattr(f, sa).ok());
  ASSERT_TRUE(fs_->setxattr(f, kAclAccessXattr, encode_acl(named_user_acl()), 0).ok());
  EXPECT_EQ(mode_of(f), 02750u) << "without the flag setgid stays";
  ASSERT_TRUE(
      fs_->setxattr(f, kAclAccessXattr, encode_acl(base_acl(0777)), kSetxattrAclKillSgid).ok());
  EXPECT_EQ(mode_of(f), 0777u);
}

}  // namespace
}  // namespace stablefs
