// A filesystem's identity as the tools show and take it: the UUID in its
// usual text form, and the label (mkfs -L, stablefs-tune -L).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/format.h"
#include "core/base/result.h"

namespace stablefs {

using Uuid = std::array<uint8_t, 16>;

// "8-4-4-4-12" lower-case hex, as blkid and mke2fs print it.
std::string format_uuid(const Uuid& u);
// The same form (either case). EINVAL with *why for anything else.
Result<Uuid> parse_uuid(std::string_view text, std::string* why);

// A label mkfs accepts: at most kLabelMaxBytes bytes and no control
// characters (they would garble every listing that shows it). EINVAL with
// *why otherwise.
Status check_label(std::string_view label, std::string* why);

}  // namespace stablefs
