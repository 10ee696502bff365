// Segment: a named POSIX shared-memory segment created, opened and removed
// through Boost.Interprocess, with a validated header (layout.h) and a
// directory of sections. It knows nothing about tasks: the engine describes
// its sections and formats them.
//
// Thread safety: a Segment object is not shared between threads while it is
// being created or moved; after that, `base()` and `section()` are const and
// safe from any thread. The mapped memory is shared by design; its protocols
// are the business of ring.h, free_stack.h, arena.h and the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "taskring/base/status.h"
#include "taskring/ipc/layout.h"

namespace taskring::ipc {

struct SectionSpec {
  std::uint32_t id = 0;         // non-zero, unique within the segment
  std::uint32_t elem_size = 1;  // bytes per element
  std::uint64_t count = 0;      // elements; size = elem_size * count
};

struct CreateOptions {
  std::uint32_t layout_version = 0;  // the engine's layout version
  std::vector<SectionSpec> sections;
  unsigned mode = 0600;              // file mode of the segment
  bool replace = false;              // remove an existing segment of the same name first
};

enum class Access { kReadWrite, kReadOnly };

// Checks that `name` is usable as a segment name: 1 to 200 characters of
// [A-Za-z0-9._-], not starting with '.'. The error names the value and the rule.
Status validate_segment_name(std::string_view name);

class Segment {
 public:
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  // Creates the segment `name`, lays out the sections after the header (each
  // aligned to kSectionAlign), calls `format` to initialise them, then marks
  // the segment ready. Errors: invalid argument (name, sections), already
  // exists (unless options.replace), internal (a system call failed). If
  // `format` fails, the half-built segment is removed.
  static Result<Segment> create(std::string_view name, const CreateOptions& options,
                                const std::function<Status(Segment&)>& format);
  // Opens and validates an existing segment: magic, header version, layout
  // version, ready flag, size against the file, owner against our uid and
  // every section's bounds. Errors: not found, permission denied, failed
  // precondition (not ready, other version), data loss (bad magic, size or
  // section bounds).
  static Result<Segment> attach(std::string_view name, std::uint32_t layout_version,
                                Access access = Access::kReadWrite);
  // Removes the segment name; mappings that exist stay valid until unmapped.
  // Errors: not found, permission denied, internal.
  static Status remove(std::string_view name);
  static bool exists(std::string_view name);
  // The (device, inode) of the file behind segment `name` now; a segment
  // removed and created again under the same name has a new identity.
  // Errors: not found, internal.
  static Result<std::pair<std::uint64_t, std::uint64_t>> file_identity(std::string_view name);
  // The (device, inode) of the file this object maps.
  std::pair<std::uint64_t, std::uint64_t> identity() const noexcept { return identity_; }

  const std::string& name() const noexcept { return name_; }
  std::byte* base() const noexcept { return base_; }
  std::size_t size() const noexcept { return size_; }
  Access access() const noexcept { return access_; }
  const SegmentHeader& header() const noexcept { return *reinterpret_cast<const SegmentHeader*>(base_); }
  // The section with `id`, bounds-checked at attach time; nullptr if absent.
  const SectionEntry* section(std::uint32_t id) const noexcept;
  // The bytes of section `id`; empty if absent.
  std::span<std::byte> section_bytes(std::uint32_t id) const noexcept;

 private:
  struct Mapping;
  Segment(std::string name, std::unique_ptr<Mapping> mapping, Access access);

  std::string name_;
  std::unique_ptr<Mapping> mapping_;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  Access access_ = Access::kReadWrite;
  std::pair<std::uint64_t, std::uint64_t> identity_{0, 0};
};

}  // namespace taskring::ipc
