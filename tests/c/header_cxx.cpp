// The header must compile cleanly as C++ too (extern "C" linkage, no C-only syntax).
#include "sharedarea.h"

#include <cstdint>

static_assert(sizeof(struct sharedarea_info) == 6 * sizeof(std::uint64_t) + 2 * sizeof(std::int32_t),
              "sharedarea_info layout");

int main()
{
    struct sharedarea_info info = {};
    std::int32_t id = sharedarea_init("1");
    std::int64_t v = 0;
    if (id >= 0) {
        sharedarea_info(id, &info);
        sharedarea_inc64(id, 0, 1, &v);
    }
    return sharedarea_abi_version() == SHAREDAREA_ABI_VERSION ? 0 : 1;
}
