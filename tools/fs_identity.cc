#include "tools/fs_identity.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace stablefs {

std::string format_uuid(const Uuid& u) {
  std::string s;
  for (size_t i = 0; i < u.size(); i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", u[i]);
    s += hex;
  }
  return s;
}

Result<Uuid> parse_uuid(std::string_view text, std::string* why) {
  auto fail = [&]() -> Result<Uuid> {
    *why = "invalid UUID '" + std::string(text) +
           "' (expected 36 characters such as 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)";
    return err(EINVAL);
  };
  if (text.size() != 36) return fail();
  Uuid u{};
  size_t nibble = 0;
  for (size_t i = 0; i < text.size(); i++) {
    char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return fail();
      continue;
    }
    int v = c >= '0' && c <= '9' ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (v < 0) return fail();
    u[nibble / 2] = uint8_t(u[nibble / 2] << 4 | v);
    nibble++;
  }
  return u;
}

Status check_label(std::string_view label, std::string* why) {
  if (label.size() > kLabelMaxBytes) {
    *why = "label too long: " + std::to_string(label.size()) + " bytes, at most " +
           std::to_string(kLabelMaxBytes);
    return err(EINVAL);
  }
  for (unsigned char c : label)
    if (c < 0x20 || c == 0x7f) {
      *why = "the label may not hold control characters";
      return err(EINVAL);
    }
  return Status::Ok();
}

}  // namespace stablefs
