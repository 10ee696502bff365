#include "taskring/ipc/segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstring>
#include <string>

#include "taskring/ipc/futex.h"

namespace taskring::ipc {
namespace bip = boost::interprocess;

struct Segment::Mapping {
  bip::shared_memory_object shm;
  bip::mapped_region region;
};

namespace {

[[maybe_unused]] std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

Status from_bip(const bip::interprocess_exception& e, std::string_view what, std::string_view name) {
  std::string msg = std::string(what) + " segment '" + std::string(name) + "': " + e.what();
  switch (e.get_error_code()) {
    case bip::not_found_error: return not_found(std::move(msg));
    case bip::already_exists_error: return already_exists(std::move(msg));
    case bip::security_error: return permission_denied(std::move(msg));
    default: return internal_error(std::move(msg));
  }
}

}  // namespace

Status validate_segment_name(std::string_view name) {
  const auto bad = [&] {
    return invalid_argument("segment name '" + std::string(name) +
                            "': must be 1 to 200 characters of A-Z a-z 0-9 . _ - and not start with '.'");
  };
  if (name.empty() || name.size() > 200 || name.front() == '.') return bad();
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return bad();
  }
  return Status::ok();
}

Segment::Segment(std::string name, std::unique_ptr<Mapping> mapping, Access access)
    : name_(std::move(name)),
      mapping_(std::move(mapping)),
      base_(static_cast<std::byte*>(mapping_->region.get_address())),
      size_(mapping_->region.get_size()),
      access_(access) {}

Segment::Segment(Segment&&) noexcept = default;
Segment& Segment::operator=(Segment&&) noexcept = default;
Segment::~Segment() = default;

bool Segment::exists(std::string_view name) {
  try {
    bip::shared_memory_object shm(bip::open_only, std::string(name).c_str(), bip::read_only);
    return true;
  } catch (const bip::interprocess_exception&) {
    return false;
  }
}

Result<std::pair<std::uint64_t, std::uint64_t>> Segment::file_identity(std::string_view name) {
  TASKRING_RETURN_IF_ERROR(validate_segment_name(name));
  // Built by appending: GCC 12 at -O3 warns falsely (-Wrestrict) on "/" + string.
  std::string path(1, '/');
  path.append(name);
  const int fd = shm_open(path.c_str(), O_RDONLY, 0);
  if (fd < 0) {
    if (errno == ENOENT) return not_found("segment '" + std::string(name) + "' does not exist");
    return internal_error("opening segment '" + std::string(name) + "': " + std::strerror(errno));
  }
  struct stat st {};
  const int rc = fstat(fd, &st);
  close(fd);
  if (rc != 0) return internal_error("stat of segment '" + std::string(name) + "': " + std::strerror(errno));
  return std::pair<std::uint64_t, std::uint64_t>(st.st_dev, st.st_ino);
}

Status Segment::remove(std::string_view name) {
  TASKRING_RETURN_IF_ERROR(validate_segment_name(name));
  if (!exists(name)) return not_found("segment '" + std::string(name) + "' does not exist");
  if (!bip::shared_memory_object::remove(std::string(name).c_str())) {
    return internal_error("removing segment '" + std::string(name) + "' failed: " + std::strerror(errno));
  }
  return Status::ok();
}

Result<Segment> Segment::create(std::string_view name, const CreateOptions& options,
                                const std::function<Status(Segment&)>& format) {
  TASKRING_RETURN_IF_ERROR(validate_segment_name(name));
  if (options.sections.empty() || options.sections.size() > kMaxSections) {
    return invalid_argument("section count " + std::to_string(options.sections.size()) +
                            ": must be between 1 and " + std::to_string(kMaxSections));
  }
  if ((options.mode & ~0777u) != 0) {
    return invalid_argument("mode " + hex(options.mode) + ": must be a permission mask within 0777");
  }
  // Lay the sections out after the header.
  std::vector<SectionEntry> entries;
  std::uint64_t offset = kHeaderBytes;
  for (const SectionSpec& s : options.sections) {
    if (s.id == 0 || s.elem_size == 0) {
      return invalid_argument("section id " + std::to_string(s.id) + " elem_size " +
                              std::to_string(s.elem_size) + ": both must be non-zero");
    }
    for (const SectionEntry& e : entries) {
      if (e.id == s.id) return invalid_argument("section id " + std::to_string(s.id) + ": duplicated");
    }
    if (s.count > (std::uint64_t{1} << 40) / s.elem_size) {
      return invalid_argument("section " + std::to_string(s.id) + " size: over 1 TiB");
    }
    const std::uint64_t size = s.count * s.elem_size;
    entries.push_back({s.id, s.elem_size, offset, size, s.count});
    offset = align_up(offset + size, kSectionAlign);
  }
  const std::uint64_t total = offset;

  const std::string cname(name);
  if (options.replace) bip::shared_memory_object::remove(cname.c_str());
  auto mapping = std::make_unique<Mapping>();
  try {
    bip::permissions perm(options.mode);
    mapping->shm = bip::shared_memory_object(bip::create_only, cname.c_str(), bip::read_write, perm);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::already_exists_error) {
      return already_exists("segment '" + cname + "' already exists (destroy it first, or use --force to replace it)");
    }
    return from_bip(e, "creating", name);
  }
  try {
    mapping->shm.truncate(static_cast<bip::offset_t>(total));
    mapping->region = bip::mapped_region(mapping->shm, bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    bip::shared_memory_object::remove(cname.c_str());
    return from_bip(e, "sizing", name);
  }
  Segment seg(cname, std::move(mapping), Access::kReadWrite);

  // The file is zero-filled by truncate; write the header, ready flag last.
  auto* h = reinterpret_cast<SegmentHeader*>(seg.base_);
  h->magic = kSegmentMagic;
  h->header_version = kHeaderVersion;
  h->layout_version = options.layout_version;
  h->total_size = total;
  h->creator_uid = static_cast<std::uint32_t>(geteuid());
  h->creator_pid = static_cast<std::uint32_t>(getpid());
  h->created_unix_ns = static_cast<std::uint64_t>(realtime_ns());
  h->section_count = static_cast<std::uint32_t>(entries.size());
  h->header_bytes = kHeaderBytes;
  for (std::size_t i = 0; i < entries.size(); ++i) h->sections[i] = entries[i];

  Status st = format(seg);
  if (!st.is_ok()) {
    bip::shared_memory_object::remove(cname.c_str());
    return st;
  }
  // [R1] release: publishes the header and every formatted section; pairs
  // with [A1] in attach.
  h->ready.store(kReadyValue, std::memory_order_release);
  return seg;
}

Result<Segment> Segment::attach(std::string_view name, std::uint32_t layout_version, Access access) {
  TASKRING_RETURN_IF_ERROR(validate_segment_name(name));
  const std::string cname(name);
  auto mapping = std::make_unique<Mapping>();
  const auto mode = access == Access::kReadOnly ? bip::read_only : bip::read_write;
  try {
    mapping->shm = bip::shared_memory_object(bip::open_only, cname.c_str(), mode);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::not_found_error) {
      return not_found("segment '" + cname + "' does not exist (create it with: taskring init --segment " + cname + ")");
    }
    return from_bip(e, "opening", name);
  }
  bip::offset_t file_size = 0;
  if (!mapping->shm.get_size(file_size)) {
    return internal_error("segment '" + cname + "': cannot read its size");
  }
  if (static_cast<std::uint64_t>(file_size) < kHeaderBytes) {
    return data_loss("segment '" + cname + "': file is " + std::to_string(file_size) +
                     " bytes, smaller than the " + std::to_string(kHeaderBytes) + "-byte header (truncated)");
  }
  // Ownership, before mapping anything: a segment of another user is refused
  // even if its mode would let us in.
  struct stat st {};
  if (fstat(mapping->shm.get_mapping_handle().handle, &st) != 0) {
    return internal_error("stat of segment '" + cname + "': " + std::strerror(errno));
  }
  if (st.st_uid != geteuid()) {
    return permission_denied("segment '" + cname + "' belongs to uid " + std::to_string(st.st_uid) +
                             ", not to this process's uid " + std::to_string(geteuid()));
  }
  try {
    mapping->region = bip::mapped_region(mapping->shm, mode);
  } catch (const bip::interprocess_exception& e) {
    return from_bip(e, "mapping", name);
  }
  Segment seg(cname, std::move(mapping), access);
  seg.identity_ = {st.st_dev, st.st_ino};
  const auto* h = reinterpret_cast<const SegmentHeader*>(seg.base_);
  const std::string who = "segment '" + cname + "'";

  // [A1] acquire: pairs with [R1] in create; everything below reads what the
  // creator wrote before it set the flag. Read first: a segment caught while
  // being built (zero-filled, header not yet written) is "not ready", not
  // "not a taskring segment".
  const std::uint32_t ready = h->ready.load(std::memory_order_acquire);
  // A valid magic with any ready value but the ready one is "not ready";
  // so is an all-zero header (the file was sized but not yet written).
  if (ready != kReadyValue && (h->magic == kSegmentMagic || h->magic == 0)) {
    return failed_precondition(who + " is not ready: its creator (pid " + std::to_string(h->creator_pid) +
                               ") has not finished building it, or died while building it; "
                               "remove it with: taskring destroy --segment " + cname);
  }
  if (h->magic != kSegmentMagic) {
    return data_loss(who + ": magic " + hex(h->magic) + " is not a taskring segment (expected " +
                     hex(kSegmentMagic) + ")");
  }
  if (h->header_version != kHeaderVersion) {
    return failed_precondition(who + ": header version " + std::to_string(h->header_version) +
                               ", this build reads version " + std::to_string(kHeaderVersion));
  }
  if (h->layout_version != layout_version) {
    return failed_precondition(who + ": layout version " + std::to_string(h->layout_version) +
                               ", this build reads version " + std::to_string(layout_version) +
                               " (recreate the segment with this build's taskring init)");
  }
  if (h->creator_uid != geteuid()) {
    return permission_denied(who + " was created by uid " + std::to_string(h->creator_uid) +
                             ", not by this process's uid " + std::to_string(geteuid()));
  }
  if (h->total_size != seg.size_) {
    return data_loss(who + ": header says " + std::to_string(h->total_size) + " bytes but the file is " +
                     std::to_string(seg.size_) + " bytes (truncated or resized)");
  }
  if (h->header_bytes != kHeaderBytes || h->section_count == 0 || h->section_count > kMaxSections) {
    return data_loss(who + ": header_bytes " + std::to_string(h->header_bytes) + " section_count " +
                     std::to_string(h->section_count) + " (expected " + std::to_string(kHeaderBytes) +
                     " and 1.." + std::to_string(kMaxSections) + ")");
  }
  std::uint64_t prev_end = kHeaderBytes;
  for (std::uint32_t i = 0; i < h->section_count; ++i) {
    const SectionEntry& e = h->sections[i];
    const std::string sec = who + ": section " + std::to_string(i) + " (id " + std::to_string(e.id) + ")";
    if (e.id == 0 || e.elem_size == 0) return data_loss(sec + ": id and elem_size must be non-zero");
    for (std::uint32_t j = 0; j < i; ++j) {
      if (h->sections[j].id == e.id) return data_loss(sec + ": id duplicates section " + std::to_string(j));
    }
    if (e.offset % kSectionAlign != 0 || e.offset < prev_end) {
      return data_loss(sec + ": offset " + std::to_string(e.offset) + " is misaligned or overlaps the previous section");
    }
    if (e.size > h->total_size || e.offset > h->total_size - e.size) {
      return data_loss(sec + ": offset " + std::to_string(e.offset) + " + size " + std::to_string(e.size) +
                       " runs past the end of the segment (" + std::to_string(h->total_size) + " bytes)");
    }
    if (e.count > e.size / e.elem_size) {
      return data_loss(sec + ": " + std::to_string(e.count) + " elements of " + std::to_string(e.elem_size) +
                       " bytes do not fit in " + std::to_string(e.size) + " bytes");
    }
    prev_end = e.offset + e.size;
  }
  return seg;
}

const SectionEntry* Segment::section(std::uint32_t id) const noexcept {
  const SegmentHeader& h = header();
  for (std::uint32_t i = 0; i < h.section_count && i < kMaxSections; ++i) {
    if (h.sections[i].id == id) return &h.sections[i];
  }
  return nullptr;
}

std::span<std::byte> Segment::section_bytes(std::uint32_t id) const noexcept {
  const SectionEntry* e = section(id);
  if (e == nullptr) return {};
  return {base_ + e->offset, e->size};
}

}  // namespace taskring::ipc
