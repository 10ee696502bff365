// The durable log: record encoding and decoding, file headers, the writer
// (batching, rotation, sync, tail repair), the reader and the follower.
// docs/formats/log.md describes every byte; this file follows it.
//
// Invariants the writer keeps, which the readers rely on:
//   1. A file appears under its final name only with its whole 64-byte header
//      written and fdatasync'd (it is written as <name>.tmp and renamed).
//   2. Records in a file have consecutive sequence numbers starting at the
//      header's first seq, and each file starts where the one before it ended.
//   3. Before a new file is created, the file before it is fdatasync'd, so
//      after a crash only the newest file can end in a torn record.
//   4. Files are removed oldest first, the directory fsync'd after each, so a
//      crash during remove_files_before never leaves a gap at the front.
//   5. The writer holds an exclusive flock on the directory: one writer.
#include "taskring/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>
#include <utility>

#include "log_internal.h"

namespace taskring::log {

using namespace internal;

std::string_view record_type_name(RecordType t) noexcept {
  switch (t) {
    case RecordType::kSegmentAttached: return "segment_attached";
    case RecordType::kSubmitted: return "submitted";
    case RecordType::kStarted: return "started";
    case RecordType::kRequeued: return "requeued";
    case RecordType::kSucceeded: return "succeeded";
    case RecordType::kFailed: return "failed";
    case RecordType::kCancelled: return "cancelled";
    case RecordType::kFreed: return "freed";
    case RecordType::kTaskSnapshot: return "task_snapshot";
    case RecordType::kResyncBegin: return "resync_begin";
    case RecordType::kResyncEnd: return "resync_end";
    case RecordType::kRecovered: return "recovered";
  }
  return "unknown";
}

namespace {

constexpr std::size_t kReadChunk = 4u << 20;  // bytes read from a file at a time

bool known_type(std::uint8_t t) noexcept { return t >= 1 && t < kRecordTypeCount; }

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08" PRIx32, v);
  return buf;
}

std::string errno_text(int err) { return std::strerror(err); }

Status io_error(const std::string& what, const std::string& path, int err) {
  return internal_error(what + " " + path + ": " + errno_text(err));
}

std::string join_path(const std::string& dir, std::string_view name) {
  std::string p = dir;
  if (p.empty() || p.back() != '/') p.push_back('/');
  p.append(name);
  return p;
}

std::size_t body_size(const Record& r) noexcept {
  std::size_t n = kFixedBodySize;
  if (r.spec) {
    n += 1 + r.spec->queue.size() + 1 + r.spec->name.size() + 4 /* priority .. detached */ + 4 + 8 + 4 +
         r.spec->payload.size();
  }
  if (r.result) n += 4 + r.result->size();
  if (!r.text.empty()) n += 4 + r.text.size();
  if (r.other_epoch != 0 || r.other_id != 0) n += 16;
  return n;
}

// A cursor over a body that never reads past its end. On failure it keeps
// the name of the first field that did not fit.
struct Cursor {
  const char* p;
  const char* end;
  const char* overrun = nullptr;

  bool take(std::size_t n, const char* field, const char** out) noexcept {
    if (static_cast<std::size_t>(end - p) < n) {
      overrun = field;
      return false;
    }
    *out = p;
    p += n;
    return true;
  }
  bool u8(std::uint8_t& v, const char* field) noexcept {
    const char* at;
    if (!take(1, field, &at)) return false;
    v = static_cast<std::uint8_t>(*at);
    return true;
  }
  bool u32(std::uint32_t& v, const char* field) noexcept {
    const char* at;
    if (!take(4, field, &at)) return false;
    v = load_u32(at);
    return true;
  }
  bool u64(std::uint64_t& v, const char* field) noexcept {
    const char* at;
    if (!take(8, field, &at)) return false;
    v = load_u64(at);
    return true;
  }
  bool bytes(std::string& s, std::size_t n, const char* field) {
    const char* at;
    if (!take(n, field, &at)) return false;
    s.assign(at, n);
    return true;
  }
};

DecodeResult problem(DecodeProblem* out, DecodeResult r, std::string what, std::string detail = {}) {
  if (out != nullptr) {
    out->what = std::move(what);
    out->detail = std::move(detail);
  }
  return r;
}

DecodeResult overrun(DecodeProblem* out, const Cursor& c, std::uint64_t seq) {
  return problem(out, DecodeResult::kMalformed, std::string("field ") + c.overrun + " overruns the body",
                 "record " + std::to_string(seq));
}

// Reads the parts after the fixed fields, reusing the strings of `r` and
// `spare`.
DecodeResult decode_body(Cursor& c, std::uint8_t flags, std::uint64_t seq, Record& r, DecodeProblem* out,
                         DecodeSpare* spare) {
  if ((flags & kFlagSpec) != 0) {
    if (!r.spec) {
      if (spare != nullptr) {
        r.spec.emplace(std::move(spare->spec));
      } else {
        r.spec.emplace();
      }
    }
    TaskSpec& s = *r.spec;
    std::uint8_t len = 0;
    if (!c.u8(len, "queue name length")) return overrun(out, c, seq);
    if (len > kMaxQueueNameLength) {
      return problem(out, DecodeResult::kMalformed, "queue name length " + std::to_string(len) + " above the limit",
                     "record " + std::to_string(seq) + ", at most " + std::to_string(kMaxQueueNameLength));
    }
    if (!c.bytes(s.queue, len, "queue name")) return overrun(out, c, seq);
    if (!c.u8(len, "task name length")) return overrun(out, c, seq);
    if (len > kMaxTaskNameLength) {
      return problem(out, DecodeResult::kMalformed, "task name length " + std::to_string(len) + " above the limit",
                     "record " + std::to_string(seq) + ", at most " + std::to_string(kMaxTaskNameLength));
    }
    if (!c.bytes(s.name, len, "task name")) return overrun(out, c, seq);
    std::uint8_t detached = 0;
    std::uint64_t run_at = 0;
    std::uint32_t payload_len = 0;
    if (!c.u8(s.priority, "priority") || !c.u8(s.max_attempts, "max_attempts") ||
        !c.u8(s.max_crashes, "max_crashes") || !c.u8(detached, "detached") ||
        !c.u32(s.time_limit_ms, "time_limit_ms") || !c.u64(run_at, "run_at_wall_ns") ||
        !c.u32(payload_len, "payload length") || !c.bytes(s.payload, payload_len, "payload")) {
      return overrun(out, c, seq);
    }
    if (detached > 1) {
      return problem(out, DecodeResult::kMalformed, "detached is " + std::to_string(detached) + ": must be 0 or 1",
                     "record " + std::to_string(seq));
    }
    s.detached = detached != 0;
    s.run_at_wall_ns = static_cast<std::int64_t>(run_at);
  } else if (r.spec) {
    if (spare != nullptr) spare->spec = std::move(*r.spec);
    r.spec.reset();
  }
  if ((flags & kFlagResult) != 0) {
    if (!r.result) {
      if (spare != nullptr) {
        r.result.emplace(std::move(spare->result));
      } else {
        r.result.emplace();
      }
    }
    std::uint32_t len = 0;
    if (!c.u32(len, "result length") || !c.bytes(*r.result, len, "result")) return overrun(out, c, seq);
  } else if (r.result) {
    if (spare != nullptr) spare->result = std::move(*r.result);
    r.result.reset();
  }
  if ((flags & kFlagText) != 0) {
    std::uint32_t len = 0;
    if (!c.u32(len, "text length") || !c.bytes(r.text, len, "text")) return overrun(out, c, seq);
    if (len == 0) {
      return problem(out, DecodeResult::kMalformed, "text flag set with an empty text",
                     "record " + std::to_string(seq) + "; an empty text is written as no text");
    }
  } else {
    r.text.clear();
  }
  if ((flags & kFlagOther) != 0) {
    if (!c.u64(r.other_epoch, "other_epoch") || !c.u64(r.other_id, "other_id")) return overrun(out, c, seq);
    if (r.other_epoch == 0 && r.other_id == 0) {
      return problem(out, DecodeResult::kMalformed, "other flag set with other_epoch and other_id both 0",
                     "record " + std::to_string(seq) + "; zeros are written as no other task");
    }
  } else {
    r.other_epoch = 0;
    r.other_id = 0;
  }
  if (c.p != c.end) {
    return problem(out, DecodeResult::kMalformed,
                   std::to_string(c.end - c.p) + " trailing bytes after the last field",
                   "record " + std::to_string(seq));
  }
  return DecodeResult::kOk;
}

}  // namespace

namespace internal {

std::string file_name(std::uint64_t first_seq) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "taskring-%020" PRIu64 ".log", first_seq);
  return buf;
}

NameKind classify_file_name(std::string_view name, std::uint64_t* first_seq) noexcept {
  constexpr std::string_view kPrefix = "taskring-";
  constexpr std::string_view kSuffix = ".log";
  if (name.size() != kPrefix.size() + 20 + kSuffix.size()) return NameKind::kOther;
  if (name.substr(0, kPrefix.size()) != kPrefix || name.substr(kPrefix.size() + 20) != kSuffix) {
    return NameKind::kOther;
  }
  std::uint64_t v = 0;
  bool overflow = false;
  for (std::size_t i = kPrefix.size(); i < kPrefix.size() + 20; ++i) {
    const char ch = name[i];
    if (ch < '0' || ch > '9') return NameKind::kOther;
    const auto digit = static_cast<std::uint64_t>(ch - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) overflow = true;
    v = v * 10 + digit;
  }
  if (overflow || v == 0) return NameKind::kBadSeq;
  *first_seq = v;
  return NameKind::kLogFile;
}

bool is_temporary_file_name(std::string_view name) noexcept {
  constexpr std::string_view kTmp = ".tmp";
  if (name.size() <= kTmp.size() || name.substr(name.size() - kTmp.size()) != kTmp) return false;
  std::uint64_t seq = 0;
  return classify_file_name(name.substr(0, name.size() - kTmp.size()), &seq) != NameKind::kOther;
}

std::string encode_file_header(std::uint64_t first_seq, std::int64_t created_wall_ns) {
  std::string h(kFileHeaderSize, '\0');
  std::memcpy(h.data() + kFileMagicOffset, kFileMagic, sizeof kFileMagic);
  store_u32(h.data() + kFileVersionOffset, kFormatVersion);
  store_u32(h.data() + kFileHeaderSizeOffset, static_cast<std::uint32_t>(kFileHeaderSize));
  store_u64(h.data() + kFileFirstSeqOffset, first_seq);
  store_u64(h.data() + kFileCreatedOffset, static_cast<std::uint64_t>(created_wall_ns));
  store_u32(h.data() + kFileCrcOffset, crc32c(std::string_view(h.data(), kFileCrcOffset)));
  return h;
}

Status check_file_header(std::string_view header, const std::string& path, std::uint64_t name_seq) {
  if (header.size() < kFileHeaderSize) {
    return data_loss(path + ": offset 0: truncated file header: the file has " + std::to_string(header.size()) +
                     " bytes, a header is " + std::to_string(kFileHeaderSize));
  }
  if (std::memcmp(header.data() + kFileMagicOffset, kFileMagic, sizeof kFileMagic) != 0) {
    return data_loss(path + ": offset 0: bad magic: not a taskring log file, or mangled by a text-mode copy");
  }
  const std::uint32_t version = load_u32(header.data() + kFileVersionOffset);
  if (version != kFormatVersion) {
    return data_loss(path + ": offset " + std::to_string(kFileVersionOffset) + ": format version " +
                     std::to_string(version) + "; this build reads version " + std::to_string(kFormatVersion));
  }
  const std::uint32_t size = load_u32(header.data() + kFileHeaderSizeOffset);
  if (size != kFileHeaderSize) {
    return data_loss(path + ": offset " + std::to_string(kFileHeaderSizeOffset) + ": header size " +
                     std::to_string(size) + "; version 1 headers are " + std::to_string(kFileHeaderSize) + " bytes");
  }
  const std::uint32_t stored = load_u32(header.data() + kFileCrcOffset);
  const std::uint32_t computed = crc32c(header.substr(0, kFileCrcOffset));
  if (stored != computed) {
    return data_loss(path + ": offset " + std::to_string(kFileCrcOffset) + ": file header CRC mismatch (stored " +
                     hex32(stored) + ", computed " + hex32(computed) + ")");
  }
  for (std::size_t i = kFileReservedOffset; i < kFileCrcOffset; ++i) {
    if (header[i] != '\0') {
      return data_loss(path + ": offset " + std::to_string(i) + ": reserved file header byte is not zero");
    }
  }
  const std::uint64_t first = load_u64(header.data() + kFileFirstSeqOffset);
  if (first != name_seq) {
    return data_loss(path + ": offset " + std::to_string(kFileFirstSeqOffset) + ": the header's first seq is " +
                     std::to_string(first) + " but the file name says " + std::to_string(name_seq));
  }
  return Status::ok();
}

DecodeResult decode_into(std::string_view bytes, Record& r, std::size_t& used, DecodeProblem* out,
                         DecodeSpare* spare) {
  if (bytes.size() < kRecordHeaderSize) {
    return problem(out, DecodeResult::kTruncatedHeader, "truncated header",
                   std::to_string(bytes.size()) + " bytes remain, a record header is " +
                       std::to_string(kRecordHeaderSize));
  }
  const char* h = bytes.data();
  const std::uint32_t length = load_u32(h + kRecordLengthOffset);
  const std::uint64_t seq = load_u64(h + kRecordSeqOffset);
  if (length > kMaxRecordBody) {
    return problem(out, DecodeResult::kLengthAboveLimit, "length " + std::to_string(length) + " above the limit",
                   "record " + std::to_string(seq) + ", a body is at most " + std::to_string(kMaxRecordBody) +
                       " bytes");
  }
  const std::size_t remain = bytes.size() - kRecordHeaderSize;
  if (length > remain) {
    return problem(out, DecodeResult::kTruncatedBody, "truncated body",
                   "record " + std::to_string(seq) + " claims " + std::to_string(length) + " bytes, " +
                       std::to_string(remain) + " remain");
  }
  const std::size_t total = kRecordHeaderSize + length;
  const std::uint32_t stored = load_u32(h + kRecordCrcOffset);
  const std::uint32_t computed = crc32c(bytes.substr(kRecordLengthOffset, total - kRecordLengthOffset));
  if (stored != computed) {
    return problem(out, DecodeResult::kCrcMismatch, "CRC mismatch",
                   "record " + std::to_string(seq) + ": stored " + hex32(stored) + ", computed " + hex32(computed));
  }
  const auto type = static_cast<std::uint8_t>(h[kRecordTypeOffset]);
  const auto flags = static_cast<std::uint8_t>(h[kRecordFlagsOffset]);
  if (h[kRecordReservedOffset] != '\0' || h[kRecordReservedOffset + 1] != '\0') {
    return problem(out, DecodeResult::kMalformed, "reserved record header bytes are not zero",
                   "record " + std::to_string(seq));
  }
  if (!known_type(type)) {
    return problem(out, DecodeResult::kMalformed, "unknown type " + std::to_string(type),
                   "record " + std::to_string(seq) + "; this build knows types 1.." +
                       std::to_string(kRecordTypeCount - 1));
  }
  if ((flags & ~kKnownFlags) != 0) {
    return problem(out, DecodeResult::kMalformed, "unknown flag bits " + hex32(static_cast<std::uint32_t>(flags & ~kKnownFlags)),
                   "record " + std::to_string(seq));
  }
  r.type = static_cast<RecordType>(type);
  r.seq = seq;
  r.payload_missing = (flags & kFlagPayloadMissing) != 0;
  r.result_missing = (flags & kFlagResultMissing) != 0;
  Cursor c{h + kRecordHeaderSize, h + total};
  std::uint64_t wall = 0;
  if (!c.u64(wall, "wall_ns") || !c.u64(r.epoch, "epoch") || !c.u64(r.task_id, "task_id") ||
      !c.u64(r.state_word, "state_word") || !c.u32(r.pid, "pid") || !c.u32(r.aux, "aux")) {
    return overrun(out, c, seq);
  }
  r.wall_ns = static_cast<std::int64_t>(wall);
  const DecodeResult res = decode_body(c, flags, seq, r, out, spare);
  if (res != DecodeResult::kOk) return res;
  used = total;
  return DecodeResult::kOk;
}

}  // namespace internal

std::size_t encoded_size(const Record& r) noexcept { return kRecordHeaderSize + body_size(r); }

void encode(const Record& r, std::string& out) {
  const std::size_t body = body_size(r);
  TASKRING_ASSERT(body <= kMaxRecordBody);
  TASKRING_ASSERT(known_type(static_cast<std::uint8_t>(r.type)));
  std::uint8_t flags = 0;
  if (r.spec) {
    TASKRING_ASSERT(r.spec->queue.size() <= kMaxQueueNameLength);
    TASKRING_ASSERT(r.spec->name.size() <= kMaxTaskNameLength);
    flags |= kFlagSpec;
  }
  if (r.result) flags |= kFlagResult;
  if (!r.text.empty()) flags |= kFlagText;
  if (r.other_epoch != 0 || r.other_id != 0) flags |= kFlagOther;
  if (r.payload_missing) flags |= kFlagPayloadMissing;
  if (r.result_missing) flags |= kFlagResultMissing;

  const std::size_t start = out.size();
  out.resize(start + kRecordHeaderSize + body);
  char* const rec = out.data() + start;
  char* p = rec;
  store_u32(p + kRecordLengthOffset, static_cast<std::uint32_t>(body));
  store_u64(p + kRecordSeqOffset, r.seq);
  p[kRecordTypeOffset] = static_cast<char>(r.type);
  p[kRecordFlagsOffset] = static_cast<char>(flags);
  p[kRecordReservedOffset] = 0;
  p[kRecordReservedOffset + 1] = 0;
  p += kRecordHeaderSize;
  auto put8 = [&p](std::uint8_t v) { *p++ = static_cast<char>(v); };
  auto put32 = [&p](std::uint32_t v) {
    store_u32(p, v);
    p += 4;
  };
  auto put64 = [&p](std::uint64_t v) {
    store_u64(p, v);
    p += 8;
  };
  auto put_bytes = [&p](const std::string& s) {
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  put64(static_cast<std::uint64_t>(r.wall_ns));
  put64(r.epoch);
  put64(r.task_id);
  put64(r.state_word);
  put32(r.pid);
  put32(r.aux);
  if (r.spec) {
    const TaskSpec& s = *r.spec;
    put8(static_cast<std::uint8_t>(s.queue.size()));
    put_bytes(s.queue);
    put8(static_cast<std::uint8_t>(s.name.size()));
    put_bytes(s.name);
    put8(s.priority);
    put8(s.max_attempts);
    put8(s.max_crashes);
    put8(s.detached ? 1 : 0);
    put32(s.time_limit_ms);
    put64(static_cast<std::uint64_t>(s.run_at_wall_ns));
    put32(static_cast<std::uint32_t>(s.payload.size()));
    put_bytes(s.payload);
  }
  if (r.result) {
    put32(static_cast<std::uint32_t>(r.result->size()));
    put_bytes(*r.result);
  }
  if (!r.text.empty()) {
    put32(static_cast<std::uint32_t>(r.text.size()));
    put_bytes(r.text);
  }
  if ((flags & kFlagOther) != 0) {
    put64(r.other_epoch);
    put64(r.other_id);
  }
  TASKRING_ASSERT(p == rec + kRecordHeaderSize + body);
  store_u32(rec + kRecordCrcOffset,
            crc32c(std::string_view(rec + kRecordLengthOffset, kRecordHeaderSize + body - kRecordLengthOffset)));
}

Result<Record> decode(std::string_view bytes, std::size_t& used) {
  Record r;
  DecodeProblem why;
  std::size_t n = 0;
  if (decode_into(bytes, r, n, &why, nullptr) != DecodeResult::kOk) {
    return data_loss(why.what + " (" + why.detail + ")");
  }
  used = n;
  return r;
}

namespace {

using RecordFn = std::function<bool(const Record&)>;

struct LogFile {
  std::string path;
  std::uint64_t first_seq = 0;
};

// The log files of `dir`, oldest first. kNotFound when `dir` does not exist.
Result<std::vector<LogFile>> list_files(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    const int err = errno;
    if (err == ENOENT) return not_found("log directory " + dir + ": does not exist");
    if (err == ENOTDIR) return failed_precondition("log directory " + dir + ": not a directory");
    return io_error("cannot open log directory", dir, err);
  }
  std::vector<LogFile> files;
  Status bad;
  errno = 0;
  while (const dirent* e = readdir(d)) {
    std::uint64_t seq = 0;
    const std::string_view name = e->d_name;
    switch (classify_file_name(name, &seq)) {
      case NameKind::kOther: break;
      case NameKind::kLogFile: files.push_back({join_path(dir, name), seq}); break;
      case NameKind::kBadSeq:
        if (bad.is_ok()) {
          bad = data_loss(join_path(dir, name) + ": offset 0: a log file name whose sequence number is 0 or above "
                          "2^64 - 1");
        }
        break;
    }
  }
  const int err = errno;
  closedir(d);
  if (err != 0) return io_error("cannot read log directory", dir, err);
  if (!bad.is_ok()) return bad;
  std::sort(files.begin(), files.end(), [](const LogFile& a, const LogFile& b) { return a.first_seq < b.first_seq; });
  return files;
}

// Reads a file in large chunks and hands out views of byte ranges.
class FileReader {
 public:
  FileReader() = default;
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;
  FileReader(FileReader&& o) noexcept { *this = std::move(o); }
  FileReader& operator=(FileReader&& o) noexcept {
    if (this != &o) {
      close_fd();
      fd_ = std::exchange(o.fd_, -1);
      path_ = std::move(o.path_);
      size_ = o.size_;
      buf_ = std::move(o.buf_);
      capacity_ = o.capacity_;
      buf_off_ = o.buf_off_;
      buf_len_ = o.buf_len_;
      o.capacity_ = o.buf_len_ = 0;
    }
    return *this;
  }
  ~FileReader() { close_fd(); }

  // ENOENT comes back as kNotFound so that a caller can tell a file removed
  // under it from other failures.
  Status open(const std::string& path) {
    close_fd();
    path_ = path;
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) {
      const int err = errno;
      if (err == ENOENT) return not_found("log file " + path + ": removed while the log was being read");
      return io_error("cannot open log file", path, err);
    }
    (void)posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    return refresh();
  }
  // Takes the file's current size and forgets what was buffered (a writer
  // that repaired a torn tail may have rewritten those bytes).
  Status refresh() {
    struct stat st {};
    if (fstat(fd_, &st) != 0) return io_error("cannot stat log file", path_, errno);
    size_ = static_cast<std::uint64_t>(st.st_size);
    buf_len_ = 0;
    return Status::ok();
  }
  std::uint64_t size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

  // Bytes [off, off + n) of the file, n <= size() - off; nullptr after an
  // I/O error or if the file shrank, with error() saying which.
  const char* get(std::uint64_t off, std::size_t n) {
    if (n == 0) return "";
    if (off >= buf_off_ && off + n <= buf_off_ + buf_len_) return buf_.get() + (off - buf_off_);
    return fill(off, n);
  }
  const Status& error() const noexcept { return error_; }

 private:
  const char* fill(std::uint64_t off, std::size_t n) {
    const std::size_t want = static_cast<std::size_t>(
        std::min<std::uint64_t>(std::max<std::uint64_t>(n, kReadChunk), size_ - off));
    if (want > capacity_) {
      try {
        buf_ = std::make_unique_for_overwrite<char[]>(want);
      } catch (const std::bad_alloc&) {
        error_ = resource_exhausted(path_ + ": cannot allocate " + std::to_string(want) + " bytes to read a record");
        return nullptr;
      }
      capacity_ = want;
    }
    buf_off_ = off;
    buf_len_ = 0;
    while (buf_len_ < want) {
      const ssize_t got = pread(fd_, buf_.get() + buf_len_, want - buf_len_, static_cast<off_t>(off + buf_len_));
      if (got < 0) {
        if (errno == EINTR) continue;
        error_ = io_error("cannot read log file", path_, errno);
        buf_len_ = 0;
        return nullptr;
      }
      if (got == 0) {
        error_ = unavailable(path_ + ": the file shrank while being read (a writer repaired its tail); read again");
        buf_len_ = 0;
        return nullptr;
      }
      buf_len_ += static_cast<std::size_t>(got);
    }
    return buf_.get();
  }
  void close_fd() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd_ = -1;
  std::string path_;
  std::uint64_t size_ = 0;
  std::unique_ptr<char[]> buf_;
  std::size_t capacity_ = 0;
  std::uint64_t buf_off_ = 0;
  std::size_t buf_len_ = 0;
  Status error_;
};

// Opens `path` and checks its header.
Status open_log_file(FileReader& reader, const LogFile& f) {
  TASKRING_RETURN_IF_ERROR(reader.open(f.path));
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(reader.size(), kFileHeaderSize));
  const char* h = reader.get(0, n);
  if (h == nullptr) return reader.error();
  return check_file_header(std::string_view(h, n), f.path, f.first_seq);
}

// How a scan treats a bad record.
enum class TailMode {
  kStrict,  // not the newest file: any bad record is kDataLoss
  kRepair,  // the newest file: a bad record with nothing valid after it is a torn tail
  kFollow,  // following a growing file: stop before a bad record, no error
};

struct ScanState {
  std::uint64_t offset = kFileHeaderSize;  // the end of the last good record
  std::uint64_t next_seq = 0;              // the seq the next record must have
  std::uint64_t records = 0;               // records read in this scan
  bool stopped = false;                    // fn returned false
  bool bad_tail = false;                   // stopped at a record that may be torn (kRepair, kFollow)
  std::string tail_reason;                 // e.g. "truncated body at offset 4096 (record 17 claims ...)"
};

// After a record that may be torn at `off`: is there a valid record with a
// seq of at least `expected` anywhere after it? Sets *found_off and *found_seq.
bool valid_record_follows(const char* data, std::uint64_t data_off, std::uint64_t size, std::uint64_t off,
                          std::uint64_t expected, std::uint64_t* found_off, std::uint64_t* found_seq) {
  // A record takes at least kMinRecordSize bytes, which bounds the seqs that
  // can follow; the cheap seq test rules out almost every offset.
  const std::uint64_t max_seq = expected + (size - off) / kMinRecordSize + 1;
  for (std::uint64_t q = off + 1; q + kRecordHeaderSize <= size; ++q) {
    const char* h = data + (q - data_off);
    const std::uint64_t seq = load_u64(h + kRecordSeqOffset);
    if (seq < expected || seq > max_seq) continue;
    const std::uint32_t len = load_u32(h + kRecordLengthOffset);
    if (len > kMaxRecordBody || len > size - q - kRecordHeaderSize) continue;
    const std::string_view covered(h + kRecordLengthOffset, kRecordHeaderSize + len - kRecordLengthOffset);
    if (crc32c(covered) != load_u32(h + kRecordCrcOffset)) continue;
    *found_off = q;
    *found_seq = seq;
    return true;
  }
  return false;
}

// Reads records of one file from st.offset to its end (as of reader.size()),
// checking each and passing those with seq >= deliver_from to fn.
Status scan_records(FileReader& reader, TailMode mode, std::uint64_t deliver_from, const RecordFn* fn, Record& rec,
                    DecodeSpare& spare, ScanState& st) {
  const std::uint64_t size = reader.size();
  const std::string& path = reader.path();
  DecodeProblem why;
  DecodeResult res = DecodeResult::kOk;
  while (st.offset < size) {
    const std::uint64_t off = st.offset;
    const std::uint64_t remain = size - off;
    std::size_t record_bytes = static_cast<std::size_t>(std::min<std::uint64_t>(remain, kRecordHeaderSize));
    const char* p = reader.get(off, record_bytes);
    if (p == nullptr) return reader.error();
    if (record_bytes == kRecordHeaderSize) {
      const std::uint64_t len = load_u32(p + kRecordLengthOffset);
      // decode_into gets the whole record, or for a body past the end of
      // the file everything that is left (so that it can say how much);
      // a length past the limit it reports from the header alone.
      if (len <= kMaxRecordBody) {
        record_bytes = static_cast<std::size_t>(std::min<std::uint64_t>(kRecordHeaderSize + len, remain));
        p = reader.get(off, record_bytes);
        if (p == nullptr) return reader.error();
      }
    }
    std::size_t used = 0;
    res = decode_into(std::string_view(p, record_bytes), rec, used, &why, &spare);
    if (res != DecodeResult::kOk) break;
    if (rec.seq != st.next_seq) {
      return data_loss(path + ": offset " + std::to_string(off) + ": sequence gap: record seq " +
                       std::to_string(rec.seq) + ", expected " + std::to_string(st.next_seq));
    }
    st.offset = off + used;
    ++st.next_seq;
    ++st.records;
    if (fn != nullptr && rec.seq >= deliver_from && !(*fn)(rec)) {
      st.stopped = true;
      return Status::ok();
    }
  }
  if (res == DecodeResult::kOk) return Status::ok();

  const std::uint64_t off = st.offset;
  const std::string where = path + ": offset " + std::to_string(off) + ": ";
  if (res == DecodeResult::kMalformed) return data_loss(where + why.what + " (" + why.detail + ")");
  if (mode == TailMode::kStrict) {
    return data_loss(where + why.what + " (" + why.detail + "); a newer file follows, so this is corruption, not "
                     "a torn tail");
  }
  st.bad_tail = true;
  st.tail_reason = why.what + " at offset " + std::to_string(off) + " (" + why.detail + ")";
  if (mode == TailMode::kFollow) return Status::ok();
  const char* rest = reader.get(off, static_cast<std::size_t>(size - off));
  if (rest == nullptr) return reader.error();
  std::uint64_t found_off = 0;
  std::uint64_t found_seq = 0;
  if (valid_record_follows(rest, off, size, off, st.next_seq, &found_off, &found_seq)) {
    return data_loss(where + why.what + " (" + why.detail + "); a valid record (seq " + std::to_string(found_seq) +
                     ") follows at offset " + std::to_string(found_off) + ", so this is corruption, not a torn tail");
  }
  return Status::ok();
}

std::int64_t wall_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Status write_all(int fd, const char* p, std::size_t n, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot write log file", path, errno);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return Status::ok();
}

}  // namespace

// ---- LogWriter ---------------------------------------------------------------------

struct LogWriter::Impl {
  struct File {
    std::string path;
    std::uint64_t first_seq = 0;
    std::uint64_t bytes = 0;
  };

  std::string dir;
  LogOptions options;
  int dir_fd = -1;  // holds the flock; fsync'd after creating or removing a file
  int fd = -1;      // files.back(), opened O_APPEND
  std::vector<File> files;
  std::uint64_t next_seq = 1;   // the next seq append gives
  std::uint64_t batch_seq = 1;  // the seq of the batch's first record
  std::string batch;
  std::vector<std::size_t> starts;  // offset in batch of each record
  std::vector<std::size_t> cuts;    // record indexes before which a new file starts (ascending)
  std::uint64_t total_bytes = 0;
  bool file_dirty = false;  // fd written since the last fdatasync
  bool dir_dirty = false;   // a file created since the last directory fsync
  Status failed;            // the first I/O error of write or sync: the writer is unusable

  ~Impl() {
    if (fd >= 0) ::close(fd);
    if (dir_fd >= 0) ::close(dir_fd);  // releases the flock
  }

  bool current_has_records() const { return files.back().bytes > kFileHeaderSize; }

  // Creates the file whose first record will be `first_seq` and makes it
  // the current one. The old current file, if any, was synced by the caller.
  Status create_file(std::uint64_t first_seq) {
    const std::string path = join_path(dir, file_name(first_seq));
    const std::string tmp = path + ".tmp";
    const int nfd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (nfd < 0) return io_error("cannot create log file", tmp, errno);
    const std::string header = encode_file_header(first_seq, wall_now_ns());
    Status s = write_all(nfd, header.data(), header.size(), tmp);
    if (s.is_ok() && fdatasync(nfd) != 0) s = io_error("cannot fdatasync log file", tmp, errno);
    if (s.is_ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = io_error("cannot rename into place", tmp, errno);
    ::close(nfd);
    if (!s.is_ok()) {
      (void)::unlink(tmp.c_str());
      return s;
    }
    const int afd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (afd < 0) return io_error("cannot open log file", path, errno);
    if (fd >= 0) ::close(fd);
    fd = afd;
    files.push_back({path, first_seq, kFileHeaderSize});
    total_bytes += kFileHeaderSize;
    dir_dirty = true;
    file_dirty = false;
    return Status::ok();
  }

  // Ends the current file (durably: invariant 3) and starts the next.
  Status rotate(std::uint64_t first_seq) {
    if (file_dirty) {
      if (fdatasync(fd) != 0) return io_error("cannot fdatasync log file", files.back().path, errno);
      file_dirty = false;
    }
    return create_file(first_seq);
  }

  std::size_t record_end(std::size_t i) const { return i + 1 < starts.size() ? starts[i + 1] : batch.size(); }

  Status write_batch() {
    const std::size_t n = starts.size();
    std::size_t cut = 0;  // next entry of cuts
    std::size_t i = 0;
    while (i < n) {
      bool forced = false;
      while (cut < cuts.size() && cuts[cut] <= i) {
        forced = forced || cuts[cut] == i;
        ++cut;
      }
      if (current_has_records() && (forced || files.back().bytes >= options.file_bytes)) {
        TASKRING_RETURN_IF_ERROR(rotate(batch_seq + i));
      }
      // Records i..j-1 go to this file in one write(2): each next one starts
      // below file_bytes and no cut comes before it.
      std::uint64_t file_size = files.back().bytes + (record_end(i) - starts[i]);
      std::size_t j = i + 1;
      while (j < n && file_size < options.file_bytes && !(cut < cuts.size() && cuts[cut] == j)) {
        file_size += record_end(j) - starts[j];
        ++j;
      }
      const std::size_t from = starts[i];
      const std::size_t to = record_end(j - 1);
      TASKRING_RETURN_IF_ERROR(write_all(fd, batch.data() + from, to - from, files.back().path));
      files.back().bytes += to - from;
      total_bytes += to - from;
      file_dirty = true;
      i = j;
    }
    // A start_new_file after the last append applies to the next batch.
    const bool carry = !cuts.empty() && cuts.back() == n;
    batch_seq += n;
    batch.clear();
    starts.clear();
    cuts.clear();
    if (carry) cuts.push_back(0);
    return Status::ok();
  }
};

LogWriter::LogWriter(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
LogWriter::LogWriter(LogWriter&&) noexcept = default;
LogWriter& LogWriter::operator=(LogWriter&&) noexcept = default;
LogWriter::~LogWriter() = default;

Result<LogWriter> LogWriter::open(const std::string& dir, const LogOptions& options, RepairReport* report) {
  if (options.file_bytes == 0) return invalid_argument("file_bytes 0: must be at least 1");
  if (dir.empty()) return invalid_argument("log directory '': must not be empty");
  if (report != nullptr) *report = RepairReport{};
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->options = options;

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return internal_error("cannot create log directory " + dir + ": " + ec.message());
  impl->dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (impl->dir_fd < 0) return io_error("cannot open log directory", dir, errno);
  if (flock(impl->dir_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      return failed_precondition("log directory " + dir +
                                 ": another writer holds it (an exclusive flock); one writer per directory");
    }
    return io_error("cannot lock log directory", dir, err);
  }

  // Leftovers of a crash while a file was being created (invariant 1).
  if (DIR* d = opendir(dir.c_str())) {
    std::vector<std::string> stale;
    while (const dirent* e = readdir(d)) {
      if (is_temporary_file_name(e->d_name)) stale.push_back(join_path(dir, e->d_name));
    }
    closedir(d);
    for (const std::string& p : stale) (void)::unlink(p.c_str());
  }

  Result<std::vector<LogFile>> listed = list_files(dir);
  if (!listed) return listed.status();
  const std::vector<LogFile>& files = *listed;
  Record rec;
  DecodeSpare spare;
  std::uint64_t expected = files.empty() ? 1 : files.front().first_seq;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const LogFile& f = files[i];
    const bool last = i + 1 == files.size();
    FileReader reader;
    TASKRING_RETURN_IF_ERROR(open_log_file(reader, f));
    if (f.first_seq != expected) {
      return data_loss(f.path + ": offset " + std::to_string(kFileFirstSeqOffset) + ": sequence gap between files: " +
                       "it starts at seq " + std::to_string(f.first_seq) + " but " + files[i - 1].path +
                       " ends at seq " + std::to_string(expected - 1));
    }
    ScanState st;
    st.next_seq = f.first_seq;
    TASKRING_RETURN_IF_ERROR(
        scan_records(reader, last ? TailMode::kRepair : TailMode::kStrict, 0, nullptr, rec, spare, st));
    std::uint64_t bytes = reader.size();
    if (st.bad_tail) {
      const int tfd = ::open(f.path.c_str(), O_WRONLY | O_CLOEXEC);
      if (tfd < 0) return io_error("cannot open log file to repair its tail", f.path, errno);
      Status s;
      if (ftruncate(tfd, static_cast<off_t>(st.offset)) != 0) {
        s = io_error("cannot truncate the torn tail of", f.path, errno);
      } else if (fdatasync(tfd) != 0) {
        s = io_error("cannot fdatasync log file", f.path, errno);
      }
      ::close(tfd);
      TASKRING_RETURN_IF_ERROR(s);
      if (report != nullptr) {
        report->truncated = true;
        report->file = f.path;
        report->offset = st.offset;
        report->bytes_dropped = bytes - st.offset;
        report->reason = st.tail_reason;
      }
      bytes = st.offset;
    }
    impl->files.push_back({f.path, f.first_seq, bytes});
    impl->total_bytes += bytes;
    expected = st.next_seq;
  }
  impl->next_seq = expected;
  impl->batch_seq = expected;
  if (impl->files.empty()) {
    TASKRING_RETURN_IF_ERROR(impl->create_file(1));
  } else {
    const std::string& path = impl->files.back().path;
    impl->fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (impl->fd < 0) return io_error("cannot open log file", path, errno);
  }
  return LogWriter(std::move(impl));
}

std::uint64_t LogWriter::append(Record& r) {
  Impl& w = *impl_;
  r.seq = w.next_seq++;
  w.starts.push_back(w.batch.size());
  encode(r, w.batch);
  return r.seq;
}

Status LogWriter::write() {
  Impl& w = *impl_;
  if (!w.failed.is_ok()) return w.failed;
  Status s = w.write_batch();
  if (!s.is_ok()) w.failed = s;
  return s;
}

Status LogWriter::sync() {
  Impl& w = *impl_;
  if (!w.failed.is_ok()) return w.failed;
  Status s;
  if (w.file_dirty) {
    if (fdatasync(w.fd) != 0) {
      s = io_error("cannot fdatasync log file", w.files.back().path, errno);
    } else {
      w.file_dirty = false;
    }
  }
  if (s.is_ok() && w.dir_dirty) {
    if (fsync(w.dir_fd) != 0) {
      s = io_error("cannot fsync log directory", w.dir, errno);
    } else {
      w.dir_dirty = false;
    }
  }
  // After a failed fsync the kernel may have dropped the dirty pages: what
  // reached the disk is unknown, so the writer stops here.
  if (!s.is_ok()) w.failed = s;
  return s;
}

Status LogWriter::start_new_file() {
  Impl& w = *impl_;
  if (!w.failed.is_ok()) return w.failed;
  const std::size_t at = w.starts.size();
  if (w.cuts.empty() || w.cuts.back() != at) w.cuts.push_back(at);
  return Status::ok();
}

Result<std::size_t> LogWriter::remove_files_before(std::uint64_t seq) {
  Impl& w = *impl_;
  std::size_t removed = 0;
  // files[0] holds seqs first_seq .. files[1].first_seq - 1.
  while (w.files.size() > 1 && w.files[1].first_seq <= seq) {
    const Impl::File& f = w.files.front();
    if (::unlink(f.path.c_str()) != 0 && errno != ENOENT) return io_error("cannot remove log file", f.path, errno);
    if (fsync(w.dir_fd) != 0) return io_error("cannot fsync log directory", w.dir, errno);
    w.total_bytes -= f.bytes;
    w.files.erase(w.files.begin());
    ++removed;
  }
  return removed;
}

std::uint64_t LogWriter::next_seq() const noexcept { return impl_->next_seq; }
std::uint64_t LogWriter::bytes_on_disk() const noexcept { return impl_->total_bytes; }
const std::string& LogWriter::dir() const noexcept { return impl_->dir; }

// ---- read_log ----------------------------------------------------------------------

namespace {

// One pass of read_log. Sets *vanished when a file disappeared before any
// record was delivered (remove_files_before ran meanwhile): the caller lists
// the directory again.
Status read_pass(const std::string& dir, const RecordFn& fn, std::uint64_t from_seq, ReadReport& report,
                 bool* vanished) {
  Result<std::vector<LogFile>> listed = list_files(dir);
  if (!listed) return listed.status();
  const std::vector<LogFile>& files = *listed;
  if (files.empty()) return Status::ok();
  // Files wholly before from_seq: every seq in file i is below files[i + 1].first_seq.
  std::size_t first = 0;
  while (first + 1 < files.size() && files[first + 1].first_seq <= from_seq) ++first;

  Record rec;
  DecodeSpare spare;
  std::uint64_t delivered = 0;
  const RecordFn counted = [&](const Record& r) {
    if (delivered == 0) report.first_seq = r.seq;
    report.last_seq = r.seq;
    ++delivered;
    return fn(r);
  };
  std::uint64_t expected = files[first].first_seq;
  for (std::size_t i = first; i < files.size(); ++i) {
    const LogFile& f = files[i];
    const bool last = i + 1 == files.size();
    FileReader reader;
    if (Status s = open_log_file(reader, f); !s.is_ok()) {
      if (s.code() == StatusCode::kNotFound && delivered == 0) {
        *vanished = true;
        return Status::ok();
      }
      if (s.code() == StatusCode::kNotFound) return unavailable(s.message() + "; read again");
      return s;
    }
    if (f.first_seq != expected) {
      return data_loss(f.path + ": offset " + std::to_string(kFileFirstSeqOffset) + ": sequence gap between files: " +
                       "it starts at seq " + std::to_string(f.first_seq) + " but " + files[i - 1].path +
                       " ends at seq " + std::to_string(expected - 1));
    }
    ScanState st;
    st.next_seq = f.first_seq;
    TASKRING_RETURN_IF_ERROR(
        scan_records(reader, last ? TailMode::kRepair : TailMode::kStrict, from_seq, &counted, rec, spare, st));
    report.files.push_back({f.path, f.first_seq, st.next_seq - 1, reader.size()});
    if (st.stopped) break;
    if (st.bad_tail) {
      report.torn_tail = true;
      report.tail_file = f.path;
      report.tail_offset = st.offset;
      report.tail_bytes = reader.size() - st.offset;
      report.tail_reason = st.tail_reason;
    }
    expected = st.next_seq;
  }
  report.records = delivered;
  return Status::ok();
}

}  // namespace

Result<ReadReport> read_log(const std::string& dir, const std::function<bool(const Record&)>& fn,
                            std::uint64_t from_seq) {
  // Each retry follows a remove_files_before that overtook the listing; a
  // writer removes files rarely, so a few tries are plenty.
  for (int attempt = 0; attempt < 8; ++attempt) {
    ReadReport report;
    bool vanished = false;
    TASKRING_RETURN_IF_ERROR(read_pass(dir, fn, from_seq, report, &vanished));
    if (!vanished) return report;
  }
  return unavailable("log directory " + dir + ": files kept being removed while it was read; read again");
}

// ---- LogFollower -------------------------------------------------------------------

struct LogFollower::Impl {
  std::string dir;
  std::uint64_t deliver_from = 0;
  bool have_file = false;
  LogFile file;  // the one being followed
  FileReader reader;
  ScanState st;
  Record rec;
  DecodeSpare spare;

  Status start_file(const LogFile& f) {
    TASKRING_RETURN_IF_ERROR(open_log_file(reader, f));
    file = f;
    have_file = true;
    const std::uint64_t next = st.next_seq;
    st = ScanState{};
    st.next_seq = next;
    return Status::ok();
  }

  // Picks the file to start in: the last one whose first seq is at most
  // `seq`, else the first.
  static const LogFile& file_for(const std::vector<LogFile>& files, std::uint64_t seq) {
    std::size_t i = 0;
    while (i + 1 < files.size() && files[i + 1].first_seq <= seq) ++i;
    return files[i];
  }
};

LogFollower::LogFollower(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
LogFollower::LogFollower(LogFollower&&) noexcept = default;
LogFollower& LogFollower::operator=(LogFollower&&) noexcept = default;
LogFollower::~LogFollower() = default;

Result<LogFollower> LogFollower::open(const std::string& dir, std::uint64_t from_seq) {
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  Result<std::vector<LogFile>> listed = list_files(dir);
  if (!listed) return listed.status();
  const std::vector<LogFile>& files = *listed;
  if (from_seq != 0) {
    impl->deliver_from = from_seq;
    impl->st.next_seq = files.empty() ? 1 : Impl::file_for(files, from_seq).first_seq;
    return LogFollower(std::move(impl));
  }
  // Start after what is complete now: read the newest file to its end.
  if (files.empty()) {
    impl->deliver_from = 1;
    impl->st.next_seq = 1;
    return LogFollower(std::move(impl));
  }
  impl->st.next_seq = files.back().first_seq;
  TASKRING_RETURN_IF_ERROR(impl->start_file(files.back()));
  TASKRING_RETURN_IF_ERROR(
      scan_records(impl->reader, TailMode::kFollow, 0, nullptr, impl->rec, impl->spare, impl->st));
  impl->deliver_from = impl->st.next_seq;
  return LogFollower(std::move(impl));
}

Result<std::uint64_t> LogFollower::poll(const std::function<bool(const Record&)>& fn) {
  Impl& f = *impl_;
  // Listed before reading: a file newer than the current one in this list
  // was created after the current one's last record was written.
  Result<std::vector<LogFile>> listed = list_files(f.dir);
  if (!listed) return listed.status();
  const std::vector<LogFile>& files = *listed;
  if (files.empty()) return std::uint64_t{0};
  if (!f.have_file) {
    const LogFile& start = Impl::file_for(files, f.st.next_seq);
    f.st.next_seq = start.first_seq;
    TASKRING_RETURN_IF_ERROR(f.start_file(start));
  }
  std::uint64_t delivered = 0;
  const RecordFn counted = [&](const Record& r) {
    ++delivered;
    return fn(r);
  };
  for (;;) {
    const auto newer = std::find_if(files.begin(), files.end(),
                                    [&](const LogFile& l) { return l.first_seq > f.file.first_seq; });
    const bool complete = newer != files.end();
    TASKRING_RETURN_IF_ERROR(f.reader.refresh());
    f.st.bad_tail = false;
    TASKRING_RETURN_IF_ERROR(scan_records(f.reader, complete ? TailMode::kStrict : TailMode::kFollow,
                                          f.deliver_from, &counted, f.rec, f.spare, f.st));
    if (f.st.stopped) {
      f.st.stopped = false;
      return delivered;
    }
    if (!complete) return delivered;
    // The current file is complete and read to its end: on to the next.
    if (newer->first_seq != f.st.next_seq) {
      return data_loss(newer->path + ": offset " + std::to_string(kFileFirstSeqOffset) +
                       ": sequence gap between files: it starts at seq " + std::to_string(newer->first_seq) +
                       " but " + f.file.path + " ends at seq " + std::to_string(f.st.next_seq - 1));
    }
    TASKRING_RETURN_IF_ERROR(f.start_file(*newer));
  }
}

std::uint64_t LogFollower::next_seq() const noexcept { return impl_->st.next_seq; }

}  // namespace taskring::log
