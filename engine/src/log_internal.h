// Private pieces of the durable log shared by log.cc, crc32c.cc and the
// tests: the byte offsets of the file header and of the record header, the
// flag bits, the two CRC32C implementations, file naming, and the decoder
// that fills a reused Record. docs/formats/log.md is the reference for every
// offset here; a change to one changes kFormatVersion and that document.
//
// Thread safety: functions of their arguments only.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "taskring/base/status.h"
#include "taskring/log.h"

namespace taskring::log::internal {

// ---- file header (64 bytes) --------------------------------------------------
// "TRLOG", then CR LF (caught if a text-mode copy turns it into LF, or LF
// into CR LF) and 0x89 (caught if a 7-bit channel clears the top bit).
inline constexpr unsigned char kFileMagic[8] = {'T', 'R', 'L', 'O', 'G', 0x0D, 0x0A, 0x89};
inline constexpr std::size_t kFileHeaderSize = 64;
inline constexpr std::size_t kFileMagicOffset = 0;      // 8 bytes
inline constexpr std::size_t kFileVersionOffset = 8;    // u32 kFormatVersion
inline constexpr std::size_t kFileHeaderSizeOffset = 12;  // u32 kFileHeaderSize
inline constexpr std::size_t kFileFirstSeqOffset = 16;  // u64
inline constexpr std::size_t kFileCreatedOffset = 24;   // i64 CLOCK_REALTIME ns
inline constexpr std::size_t kFileReservedOffset = 32;  // 28 zero bytes
inline constexpr std::size_t kFileCrcOffset = 60;       // u32 CRC32C of bytes 0..59

// ---- record header (20 bytes), then the body ------------------------------------
inline constexpr std::size_t kRecordHeaderSize = 20;
inline constexpr std::size_t kRecordCrcOffset = 0;       // u32 CRC32C of bytes 4 .. end of body
inline constexpr std::size_t kRecordLengthOffset = 4;    // u32 body length
inline constexpr std::size_t kRecordSeqOffset = 8;       // u64
inline constexpr std::size_t kRecordTypeOffset = 16;     // u8 RecordType
inline constexpr std::size_t kRecordFlagsOffset = 17;    // u8 flag bits below
inline constexpr std::size_t kRecordReservedOffset = 18;  // u16, zero
// wall_ns, epoch, task_id, state_word (8 bytes each), pid, aux (4 each).
inline constexpr std::size_t kFixedBodySize = 40;
inline constexpr std::size_t kMinRecordSize = kRecordHeaderSize + kFixedBodySize;

inline constexpr std::uint8_t kFlagSpec = 1u << 0;            // the TaskSpec follows the fixed fields
inline constexpr std::uint8_t kFlagResult = 1u << 1;          // a result follows
inline constexpr std::uint8_t kFlagText = 1u << 2;            // a non-empty text follows
inline constexpr std::uint8_t kFlagOther = 1u << 3;           // other_epoch, other_id follow (not both 0)
inline constexpr std::uint8_t kFlagPayloadMissing = 1u << 4;  // Record::payload_missing
inline constexpr std::uint8_t kFlagResultMissing = 1u << 5;   // Record::result_missing
inline constexpr std::uint8_t kKnownFlags = 0x3F;

// ---- little-endian access ---------------------------------------------------------
// Byte-wise, so they are right on any host; compilers turn them into one load.
inline std::uint32_t load_u32(const char* p) noexcept {
  const auto* b = reinterpret_cast<const unsigned char*>(p);
  return std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 | std::uint32_t{b[3]} << 24;
}
inline std::uint64_t load_u64(const char* p) noexcept {
  return std::uint64_t{load_u32(p)} | std::uint64_t{load_u32(p + 4)} << 32;
}
inline void store_u32(char* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
inline void store_u64(char* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}

// ---- CRC32C -----------------------------------------------------------------------
// Both compute the same function as crc32c() in log.h (seed: a previous
// result, to continue over more bytes). The portable one is slicing-by-8
// over tables; the hardware one uses the SSE 4.2 crc32 instruction, 8 bytes
// at a time, and may be called only when crc32c_hardware_available().
std::uint32_t crc32c_portable(std::string_view bytes, std::uint32_t seed = 0) noexcept;
std::uint32_t crc32c_hardware(std::string_view bytes, std::uint32_t seed = 0) noexcept;
bool crc32c_hardware_available() noexcept;

// ---- files -------------------------------------------------------------------------
// "taskring-<first_seq, 20 digits>.log".
std::string file_name(std::uint64_t first_seq);
// What a directory entry's name is to the log.
enum class NameKind {
  kOther,     // not a log file name: ignored
  kLogFile,   // taskring-<20 digits>.log with a usable number: *first_seq set
  kBadSeq,    // the pattern, but the number is 0 or above 2^64 - 1: an error
};
NameKind classify_file_name(std::string_view name, std::uint64_t* first_seq) noexcept;
// The temporary name a new file is written under before it is renamed into
// place ("<name>.tmp"); LogWriter::open removes leftovers of a crash.
bool is_temporary_file_name(std::string_view name) noexcept;

// The 64 header bytes of a file whose first record will be `first_seq`.
std::string encode_file_header(std::uint64_t first_seq, std::int64_t created_wall_ns);
// Checks the 64 bytes at the start of `path` (magic, version, header size,
// CRC, reserved bytes, and that its first seq is `name_seq`, the one in its
// name). kDataLoss naming the file and the offset, or for a wrong version
// the version found and the one accepted.
Status check_file_header(std::string_view header, const std::string& path, std::uint64_t name_seq);

// ---- decoding into a reused Record -------------------------------------------------
enum class DecodeResult : std::uint8_t {
  kOk = 0,
  // The four a torn write can produce: the record may be the tail of a
  // write that did not finish.
  kTruncatedHeader,
  kLengthAboveLimit,
  kTruncatedBody,
  kCrcMismatch,
  // The CRC matched, so the bytes are what a writer wrote, and they are not
  // a record of this format: never a torn write.
  kMalformed,
};
constexpr bool may_be_torn(DecodeResult r) noexcept {
  return r != DecodeResult::kOk && r != DecodeResult::kMalformed;
}

// What is wrong with a record, in two parts so that each caller can phrase
// it: `what` starts with the words log.h promises ("truncated body", "CRC
// mismatch", "unknown type 99", ...), `detail` says by how much.
struct DecodeProblem {
  std::string what;
  std::string detail;
};

// Storage kept between decode_into calls so that a Record whose optional
// parts come and go does not allocate for every record.
struct DecodeSpare {
  TaskSpec spec;
  std::string result;
};

// Parses the record at the front of `bytes` into `r`, reusing its strings.
// On kOk sets `used`; otherwise fills `problem` (if not null) and leaves `r`
// in an unspecified state. Never reads outside `bytes`. Allocates only to
// grow a string of `r` or to describe a problem.
DecodeResult decode_into(std::string_view bytes, Record& r, std::size_t& used, DecodeProblem* problem,
                         DecodeSpare* spare);

}  // namespace taskring::log::internal
