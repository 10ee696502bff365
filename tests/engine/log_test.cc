// The durable log: record encoding, CRC32C, the writer (sequence numbers,
// batching, rotation, removal, the directory lock), the reader and the
// follower, and every kind of damage a log file can suffer: what is a torn
// tail (repaired by the writer, reported by the reader) and what is
// corruption (kDataLoss naming the file and the byte offset).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "log_internal.h"
#include "taskring/log.h"

namespace taskring::log {
namespace {

namespace fs = std::filesystem;
using internal::kFileHeaderSize;
using internal::kRecordHeaderSize;

// A fresh directory under the test temp dir, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = ::testing::TempDir() + "taskring-log-" + std::to_string(getpid()) + "-" +
            std::to_string(counter.fetch_add(1)) + "-" + (info != nullptr ? info->name() : "x");
    fs::remove_all(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  // Where the log goes: a subdirectory the writer creates.
  std::string log() const { return path_ + "/log"; }

 private:
  std::string path_;
};

std::string file_path(const std::string& dir, std::uint64_t first_seq) {
  return dir + "/" + internal::file_name(first_seq);
}

std::string read_file(const std::string& path) {
  std::string out(fs::file_size(path), '\0');
  std::ifstream in(path, std::ios::binary);
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void append_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

// A record of each kind with the fields that kind uses.
Record sample(RecordType type, std::uint64_t n) {
  Record r;
  r.type = type;
  r.wall_ns = 1'700'000'000'000'000'000 + static_cast<std::int64_t>(n);
  r.epoch = 7;
  r.task_id = (std::uint64_t{3} << 32) | n;
  r.state_word = 0x0000000301020011 + n;
  r.pid = 4242;
  switch (type) {
    case RecordType::kSegmentAttached:
      r.text = "jobs";
      r.aux = 4096;
      break;
    case RecordType::kSubmitted:
    case RecordType::kTaskSnapshot:
      r.spec = TaskSpec{.queue = "default", .name = "echo", .payload = "payload-" + std::to_string(n)};
      if (type == RecordType::kTaskSnapshot) r.result = "done";
      break;
    case RecordType::kStarted: r.aux = 2; break;
    case RecordType::kRequeued: r.aux = static_cast<std::uint32_t>(RequeueReason::kCrash); break;
    case RecordType::kSucceeded:
    case RecordType::kFailed:
    case RecordType::kCancelled: r.result = "result-" + std::to_string(n); break;
    case RecordType::kFreed: r.aux = static_cast<std::uint32_t>(FreeReason::kConsumed); break;
    case RecordType::kResyncBegin:
      r.aux = static_cast<std::uint32_t>(ResyncReason::kStart);
      r.text = "sidecar started";
      break;
    case RecordType::kResyncEnd: r.aux = 12; break;
    case RecordType::kRecovered:
      r.other_epoch = 6;
      r.other_id = (std::uint64_t{9} << 32) | 5;
      break;
  }
  return r;
}

std::vector<Record> read_all(const std::string& dir, ReadReport* report = nullptr) {
  std::vector<Record> out;
  Result<ReadReport> r = read_log(dir, [&](const Record& rec) {
    out.push_back(rec);
    return true;
  });
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (r.is_ok() && report != nullptr) *report = *r;
  return out;
}

// Writes `n` records of assorted types and returns them as written (seqs set).
std::vector<Record> write_records(const std::string& dir, int n, LogOptions options = {}) {
  Result<LogWriter> w = LogWriter::open(dir, options);
  EXPECT_TRUE(w.is_ok()) << w.status().to_string();
  std::vector<Record> out;
  if (!w.is_ok()) return out;
  for (int i = 0; i < n; ++i) {
    Record r = sample(static_cast<RecordType>(1 + i % (kRecordTypeCount - 1)), static_cast<std::uint64_t>(i));
    w->append(r);
    out.push_back(r);
  }
  EXPECT_TRUE(w->write().is_ok());
  EXPECT_TRUE(w->sync().is_ok());
  return out;
}

// The byte offset of each record of a single-file log written by write_records.
std::vector<std::uint64_t> offsets(const std::vector<Record>& records) {
  std::vector<std::uint64_t> out;
  std::uint64_t at = kFileHeaderSize;
  for (const Record& r : records) {
    out.push_back(at);
    at += encoded_size(r);
  }
  out.push_back(at);  // the end
  return out;
}

// Sets a crafted record's CRC to match its bytes, so that a decoder gets past
// the CRC to the check under test.
void reseal(std::string& rec) {
  internal::store_u32(rec.data(), crc32c(std::string_view(rec).substr(4)));
}

std::string encoded(const Record& r) {
  std::string out;
  encode(r, out);
  return out;
}

// ---- CRC32C -----------------------------------------------------------------------

struct CrcVector {
  std::string bytes;
  std::uint32_t crc;
};

std::vector<CrcVector> crc_vectors() {
  std::string ascending(32, '\0');
  std::string descending(32, '\0');
  for (int i = 0; i < 32; ++i) {
    ascending[static_cast<std::size_t>(i)] = static_cast<char>(i);
    descending[static_cast<std::size_t>(i)] = static_cast<char>(31 - i);
  }
  // "123456789" is the classic check value; the 32-byte ones are RFC 3720's.
  return {{"", 0x00000000},
          {"123456789", 0xE3069283},
          {std::string(32, '\0'), 0x8A9136AA},
          {std::string(32, '\xFF'), 0x62A8AB43},
          {ascending, 0x46DD794E},
          {descending, 0x113FDB5C}};
}

TEST(LogTest, CrcPortableMatchesKnownVectors) {
  for (const CrcVector& v : crc_vectors()) {
    EXPECT_EQ(internal::crc32c_portable(v.bytes), v.crc) << "length " << v.bytes.size();
  }
}

TEST(LogTest, CrcHardwareMatchesKnownVectors) {
  if (!internal::crc32c_hardware_available()) GTEST_SKIP() << "this CPU has no SSE 4.2";
  for (const CrcVector& v : crc_vectors()) {
    EXPECT_EQ(internal::crc32c_hardware(v.bytes), v.crc) << "length " << v.bytes.size();
  }
}

TEST(LogTest, CrcDispatchMatchesKnownVectors) {
  for (const CrcVector& v : crc_vectors()) EXPECT_EQ(crc32c(v.bytes), v.crc);
}

TEST(LogTest, CrcHardwareAndPortableAgreeOnEveryLengthAndAlignment) {
  if (!internal::crc32c_hardware_available()) GTEST_SKIP() << "this CPU has no SSE 4.2";
  std::mt19937 rng(12345);
  std::string buf(300, '\0');
  for (char& c : buf) c = static_cast<char>(rng());
  for (std::size_t start = 0; start < 9; ++start) {
    for (std::size_t len = 0; start + len <= buf.size(); len += 7) {
      const std::string_view b = std::string_view(buf).substr(start, len);
      ASSERT_EQ(internal::crc32c_hardware(b, 0x1234), internal::crc32c_portable(b, 0x1234))
          << "start " << start << " length " << len;
    }
  }
}

TEST(LogTest, CrcSeedContinuesOverMoreBytes) {
  const std::string a = "12345";
  const std::string b = "6789";
  EXPECT_EQ(crc32c(b, crc32c(a)), 0xE3069283u);
  EXPECT_EQ(internal::crc32c_portable(b, internal::crc32c_portable(a)), 0xE3069283u);
}

// ---- decode: errors first -----------------------------------------------------------

TEST(LogTest, DecodeRejectsTruncatedHeader) {
  const std::string rec = encoded(sample(RecordType::kStarted, 1));
  std::size_t used = 99;
  Result<Record> r = decode(std::string_view(rec).substr(0, kRecordHeaderSize - 1), used);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  expect_contains(r.status().message(), "truncated header");
  EXPECT_EQ(used, 99u);
}

TEST(LogTest, DecodeRejectsTruncatedBody) {
  const std::string rec = encoded(sample(RecordType::kSucceeded, 1));
  std::size_t used = 0;
  Result<Record> r = decode(std::string_view(rec).substr(0, rec.size() - 1), used);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  expect_contains(r.status().message(), "truncated body");
}

TEST(LogTest, DecodeRejectsCrcMismatch) {
  std::string rec = encoded(sample(RecordType::kSucceeded, 1));
  rec[rec.size() - 1] ^= 0x10;
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  expect_contains(r.status().message(), "CRC mismatch");
}

TEST(LogTest, DecodeRejectsUnknownType) {
  for (const int type : {0, kRecordTypeCount, 255}) {
    std::string rec = encoded(sample(RecordType::kStarted, 1));
    rec[internal::kRecordTypeOffset] = static_cast<char>(type);
    reseal(rec);
    std::size_t used = 0;
    Result<Record> r = decode(rec, used);
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    expect_contains(r.status().message(), "unknown type " + std::to_string(type));
  }
}

TEST(LogTest, DecodeRejectsUnknownFlagBits) {
  std::string rec = encoded(sample(RecordType::kStarted, 1));
  rec[internal::kRecordFlagsOffset] = static_cast<char>(0x40);
  reseal(rec);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  expect_contains(r.status().message(), "unknown flag bits 0x00000040");
}

TEST(LogTest, DecodeRejectsNonZeroReservedHeaderBytes) {
  std::string rec = encoded(sample(RecordType::kStarted, 1));
  rec[internal::kRecordReservedOffset] = 1;
  reseal(rec);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  expect_contains(r.status().message(), "reserved record header bytes are not zero");
}

TEST(LogTest, DecodeRejectsLengthAboveTheLimit) {
  std::string rec = encoded(sample(RecordType::kStarted, 1));
  internal::store_u32(rec.data() + internal::kRecordLengthOffset, kMaxRecordBody + 1);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  expect_contains(r.status().message(), "length " + std::to_string(kMaxRecordBody + 1) + " above the limit");
}

TEST(LogTest, DecodeRejectsQueueNameAboveTheLimit) {
  Record s = sample(RecordType::kSubmitted, 1);
  std::string rec = encoded(s);
  // The queue name length is the first body byte after the fixed fields.
  rec[kRecordHeaderSize + internal::kFixedBodySize] = static_cast<char>(kMaxQueueNameLength + 1);
  reseal(rec);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  expect_contains(r.status().message(), "queue name length 32 above the limit");
}

TEST(LogTest, DecodeRejectsTaskNameAboveTheLimit) {
  Record s = sample(RecordType::kSubmitted, 1);
  std::string rec = encoded(s);
  const std::size_t at = kRecordHeaderSize + internal::kFixedBodySize + 1 + s.spec->queue.size();
  rec[at] = static_cast<char>(kMaxTaskNameLength + 1);
  reseal(rec);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  expect_contains(r.status().message(), "task name length 48 above the limit");
}

TEST(LogTest, DecodeRejectsFieldOverrunningTheBody) {
  Record s = sample(RecordType::kSucceeded, 1);  // fixed fields, then u32 result length and the result
  std::string rec = encoded(s);
  internal::store_u32(rec.data() + kRecordHeaderSize + internal::kFixedBodySize, 1000);
  reseal(rec);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  expect_contains(r.status().message(), "field result overruns the body");
}

TEST(LogTest, DecodeRejectsBodyShorterThanTheFixedFields) {
  std::string rec = encoded(sample(RecordType::kStarted, 1));
  rec.resize(kRecordHeaderSize + 30);
  internal::store_u32(rec.data() + internal::kRecordLengthOffset, 30);
  reseal(rec);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  expect_contains(r.status().message(), "field state_word overruns the body");
}

TEST(LogTest, DecodeRejectsTrailingBytesInTheBody) {
  std::string rec = encoded(sample(RecordType::kStarted, 1));
  rec.append("xyz");
  internal::store_u32(rec.data() + internal::kRecordLengthOffset,
                      static_cast<std::uint32_t>(rec.size() - kRecordHeaderSize));
  reseal(rec);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  expect_contains(r.status().message(), "3 trailing bytes after the last field");
}

TEST(LogTest, DecodeRejectsDetachedOtherThanZeroOrOne) {
  Record s = sample(RecordType::kSubmitted, 1);
  std::string rec = encoded(s);
  const std::size_t at =
      kRecordHeaderSize + internal::kFixedBodySize + 1 + s.spec->queue.size() + 1 + s.spec->name.size() + 3;
  rec[at] = 2;
  reseal(rec);
  std::size_t used = 0;
  Result<Record> r = decode(rec, used);
  ASSERT_FALSE(r.is_ok());
  expect_contains(r.status().message(), "detached is 2");
}

TEST(LogTest, DecodeOfEveryPrefixFailsWithinItsBytes) {
  Record s = sample(RecordType::kTaskSnapshot, 1);
  s.text = "t";
  s.other_epoch = 1;
  const std::string rec = encoded(s);
  for (std::size_t n = 0; n < rec.size(); ++n) {
    // An exact-size heap copy, so that AddressSanitizer sees any read past it.
    std::unique_ptr<char[]> copy(new char[n + 1]);
    std::memcpy(copy.get(), rec.data(), n);
    std::size_t used = 0;
    EXPECT_FALSE(decode(std::string_view(copy.get(), n), used).is_ok()) << "prefix of " << n << " bytes";
  }
}

// ---- encode / decode round trips -------------------------------------------------------

TEST(LogTest, RoundTripsEveryRecordType) {
  for (int t = 1; t < kRecordTypeCount; ++t) {
    Record r = sample(static_cast<RecordType>(t), static_cast<std::uint64_t>(t));
    r.seq = 100 + static_cast<std::uint64_t>(t);
    std::string bytes = encoded(r);
    bytes.append("next record");
    std::size_t used = 0;
    Result<Record> back = decode(bytes, used);
    ASSERT_TRUE(back.is_ok()) << record_type_name(r.type) << ": " << back.status().to_string();
    EXPECT_EQ(*back, r) << record_type_name(r.type);
    EXPECT_EQ(used, encoded_size(r));
    EXPECT_EQ(used, bytes.size() - std::string("next record").size());
  }
}

TEST(LogTest, RoundTripsEveryOptionalPartAndExtremeValues) {
  Record r;
  r.type = RecordType::kTaskSnapshot;
  r.seq = ~std::uint64_t{0};
  r.wall_ns = -1;
  r.epoch = ~std::uint64_t{0};
  r.task_id = 0x8000000000000001;
  r.state_word = ~std::uint64_t{0};
  r.pid = ~std::uint32_t{0};
  r.aux = 0x80000000;
  r.spec = TaskSpec{.queue = std::string(kMaxQueueNameLength, 'q'),
                    .name = std::string(kMaxTaskNameLength, 'n'),
                    .priority = 3,
                    .max_attempts = 255,
                    .max_crashes = 254,
                    .detached = true,
                    .time_limit_ms = 0xFFFFFFFF,
                    .run_at_wall_ns = -5,
                    .payload = std::string("\0\x01\xFFpay\nload", 12)};
  r.result = std::string("\0res", 4);
  r.payload_missing = true;
  r.result_missing = true;
  r.text = std::string(70000, 't');
  r.other_epoch = 1;
  r.other_id = 0;
  std::size_t used = 0;
  Result<Record> back = decode(encoded(r), used);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, r);
}

TEST(LogTest, RoundTripsEmptyOptionalParts) {
  Record r;
  r.type = RecordType::kSubmitted;
  r.spec = TaskSpec{};
  r.result = std::string();
  std::size_t used = 0;
  Result<Record> back = decode(encoded(r), used);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(*back, r);
  EXPECT_TRUE(back->spec.has_value());
  EXPECT_TRUE(back->result.has_value());
}

TEST(LogTest, RoundTripsRecordWithNoOptionalParts) {
  Record r;
  r.type = RecordType::kCancelled;
  r.seq = 1;
  std::string bytes = encoded(r);
  EXPECT_EQ(bytes.size(), internal::kMinRecordSize);
  std::size_t used = 0;
  Result<Record> back = decode(bytes, used);
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(*back, r);
  EXPECT_FALSE(back->spec.has_value());
  EXPECT_FALSE(back->result.has_value());
}

TEST(LogTest, DecodeIntoAReusedRecordClearsWhatTheNextRecordLacks) {
  Record full = sample(RecordType::kTaskSnapshot, 1);
  full.text = "x";
  full.other_epoch = 2;
  full.seq = 1;
  Record bare;
  bare.type = RecordType::kStarted;
  bare.seq = 2;
  Record reused;
  internal::DecodeSpare spare;
  std::size_t used = 0;
  ASSERT_EQ(internal::decode_into(encoded(full), reused, used, nullptr, &spare), internal::DecodeResult::kOk);
  EXPECT_EQ(reused, full);
  ASSERT_EQ(internal::decode_into(encoded(bare), reused, used, nullptr, &spare), internal::DecodeResult::kOk);
  EXPECT_EQ(reused, bare);
  ASSERT_EQ(internal::decode_into(encoded(full), reused, used, nullptr, &spare), internal::DecodeResult::kOk);
  EXPECT_EQ(reused, full);
}

TEST(LogTest, RecordTypeNames) {
  EXPECT_EQ(record_type_name(RecordType::kSegmentAttached), "segment_attached");
  EXPECT_EQ(record_type_name(RecordType::kRecovered), "recovered");
  EXPECT_EQ(record_type_name(static_cast<RecordType>(0)), "unknown");
  EXPECT_EQ(record_type_name(static_cast<RecordType>(kRecordTypeCount)), "unknown");
}

TEST(LogTest, FileNamesArePaddedAndRecognised) {
  EXPECT_EQ(internal::file_name(1), "taskring-00000000000000000001.log");
  std::uint64_t seq = 0;
  EXPECT_EQ(internal::classify_file_name("taskring-00000000000000000042.log", &seq), internal::NameKind::kLogFile);
  EXPECT_EQ(seq, 42u);
  EXPECT_EQ(internal::classify_file_name("taskring-18446744073709551615.log", &seq), internal::NameKind::kLogFile);
  EXPECT_EQ(seq, ~std::uint64_t{0});
  EXPECT_EQ(internal::classify_file_name("taskring-18446744073709551616.log", &seq), internal::NameKind::kBadSeq);
  EXPECT_EQ(internal::classify_file_name("taskring-00000000000000000000.log", &seq), internal::NameKind::kBadSeq);
  EXPECT_EQ(internal::classify_file_name("taskring-0000000000000000001.log", &seq), internal::NameKind::kOther);
  EXPECT_EQ(internal::classify_file_name("taskring-0000000000000000000x.log", &seq), internal::NameKind::kOther);
  EXPECT_EQ(internal::classify_file_name("taskring-00000000000000000001.log.tmp", &seq), internal::NameKind::kOther);
}

// ---- the writer: errors first ------------------------------------------------------------

TEST(LogTest, OpenRejectsZeroFileBytes) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), LogOptions{.file_bytes = 0});
  ASSERT_FALSE(w.is_ok());
  EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  expect_contains(w.status().message(), "file_bytes 0");
}

TEST(LogTest, SecondWriterIsRefused) {
  TempDir t;
  Result<LogWriter> first = LogWriter::open(t.log(), {});
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  Result<LogWriter> second = LogWriter::open(t.log(), {});
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  expect_contains(second.status().message(), t.log());
  expect_contains(second.status().message(), "another writer holds it");
}

TEST(LogTest, WriterCanOpenAgainAfterTheFirstIsGone) {
  TempDir t;
  { ASSERT_TRUE(LogWriter::open(t.log(), {}).is_ok()); }
  EXPECT_TRUE(LogWriter::open(t.log(), {}).is_ok());
}

TEST(LogTest, OpenOnAFileIsAnError) {
  TempDir t;
  fs::create_directories(t.path());
  write_file(t.path() + "/plain", "x");
  Result<LogWriter> w = LogWriter::open(t.path() + "/plain", {});
  ASSERT_FALSE(w.is_ok());
  expect_contains(w.status().message(), t.path() + "/plain");
}

// ---- the writer ------------------------------------------------------------------------

TEST(LogTest, OpenCreatesTheDirectoryAndAFirstFile) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), {});
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  EXPECT_TRUE(fs::exists(file_path(t.log(), 1)));
  EXPECT_EQ(fs::file_size(file_path(t.log(), 1)), kFileHeaderSize);
  EXPECT_EQ(w->next_seq(), 1u);
  EXPECT_EQ(w->bytes_on_disk(), kFileHeaderSize);
  EXPECT_EQ(w->dir(), t.log());
}

TEST(LogTest, AppendGivesConsecutiveSeqsAndNothingReachesTheFileBeforeWrite) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), {});
  ASSERT_TRUE(w.is_ok());
  Record a = sample(RecordType::kSubmitted, 1);
  Record b = sample(RecordType::kStarted, 1);
  EXPECT_EQ(w->append(a), 1u);
  EXPECT_EQ(w->append(b), 2u);
  EXPECT_EQ(a.seq, 1u);
  EXPECT_EQ(b.seq, 2u);
  EXPECT_EQ(w->next_seq(), 3u);
  EXPECT_EQ(fs::file_size(file_path(t.log(), 1)), kFileHeaderSize);
  ASSERT_TRUE(w->write().is_ok());
  EXPECT_EQ(fs::file_size(file_path(t.log(), 1)), kFileHeaderSize + encoded_size(a) + encoded_size(b));
  EXPECT_EQ(w->bytes_on_disk(), kFileHeaderSize + encoded_size(a) + encoded_size(b));
  EXPECT_EQ(read_all(t.log()), (std::vector<Record>{a, b}));
}

TEST(LogTest, WriterContinuesSequenceAcrossReopen) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 5);
  {
    RepairReport report;
    Result<LogWriter> w = LogWriter::open(t.log(), {}, &report);
    ASSERT_TRUE(w.is_ok()) << w.status().to_string();
    EXPECT_FALSE(report.truncated);
    EXPECT_EQ(w->next_seq(), 6u);
    Record r = sample(RecordType::kFreed, 6);
    EXPECT_EQ(w->append(r), 6u);
    all.push_back(r);
    ASSERT_TRUE(w->write().is_ok());
    ASSERT_TRUE(w->sync().is_ok());
  }
  EXPECT_EQ(read_all(t.log()), all);
}

TEST(LogTest, RotatesBeforeARecordThatWouldStartPastFileBytes) {
  TempDir t;
  const std::uint64_t file_bytes = 400;
  std::vector<Record> all = write_records(t.log(), 40, LogOptions{.file_bytes = file_bytes});
  ReadReport report;
  EXPECT_EQ(read_all(t.log(), &report), all);
  ASSERT_GT(report.files.size(), 3u);
  std::uint64_t next = 1;
  for (std::size_t i = 0; i < report.files.size(); ++i) {
    const FileInfo& f = report.files[i];
    EXPECT_EQ(f.first_seq, next);
    EXPECT_EQ(f.path, file_path(t.log(), f.first_seq));
    EXPECT_EQ(f.bytes, fs::file_size(f.path));
    // Every record starts below file_bytes: the file minus its last record is short of it.
    const std::uint64_t last_size = encoded_size(all[f.last_seq - 1]);
    EXPECT_LT(f.bytes - last_size, file_bytes) << f.path;
    if (i + 1 < report.files.size()) { EXPECT_GE(f.bytes, file_bytes) << f.path; }
    next = f.last_seq + 1;
  }
  EXPECT_EQ(next, 41u);
}

TEST(LogTest, RotationHappensAcrossWritesToo) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), LogOptions{.file_bytes = 200});
  ASSERT_TRUE(w.is_ok());
  std::vector<Record> all;
  for (int i = 0; i < 12; ++i) {
    Record r = sample(RecordType::kStarted, static_cast<std::uint64_t>(i));
    w->append(r);
    all.push_back(r);
    ASSERT_TRUE(w->write().is_ok());
  }
  ReadReport report;
  EXPECT_EQ(read_all(t.log(), &report), all);
  // 64 + 60 + 60 = 184 < 200, the third record makes 244: three per file.
  ASSERT_EQ(report.files.size(), 4u);
  EXPECT_EQ(report.files[1].first_seq, 4u);
}

TEST(LogTest, StartNewFileSendsTheNextRecordToANewFile) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), {});
  ASSERT_TRUE(w.is_ok());
  Record a = sample(RecordType::kStarted, 1);
  Record b = sample(RecordType::kStarted, 2);
  Record c = sample(RecordType::kStarted, 3);
  w->append(a);
  ASSERT_TRUE(w->start_new_file().is_ok());
  w->append(b);
  ASSERT_TRUE(w->write().is_ok());
  ASSERT_TRUE(w->start_new_file().is_ok());  // with nothing pending: applies to the next write
  w->append(c);
  ASSERT_TRUE(w->write().is_ok());
  ReadReport report;
  EXPECT_EQ(read_all(t.log(), &report), (std::vector<Record>{a, b, c}));
  ASSERT_EQ(report.files.size(), 3u);
  EXPECT_EQ(report.files[1].first_seq, 2u);
  EXPECT_EQ(report.files[2].first_seq, 3u);
}

TEST(LogTest, StartNewFileOnAnEmptyFileAddsNoFile) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), {});
  ASSERT_TRUE(w.is_ok());
  ASSERT_TRUE(w->start_new_file().is_ok());
  Record a = sample(RecordType::kStarted, 1);
  w->append(a);
  ASSERT_TRUE(w->write().is_ok());
  ReadReport report;
  read_all(t.log(), &report);
  EXPECT_EQ(report.files.size(), 1u);
}

TEST(LogTest, RemoveFilesBeforeDeletesWholeFilesOnlyAndNeverTheCurrentOne) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), {});
  ASSERT_TRUE(w.is_ok());
  std::vector<Record> all;
  for (int i = 0; i < 9; ++i) {  // files of seqs 1-3, 4-6, 7-9
    if (i % 3 == 0) { ASSERT_TRUE(w->start_new_file().is_ok()); }
    Record r = sample(RecordType::kStarted, static_cast<std::uint64_t>(i));
    w->append(r);
    all.push_back(r);
  }
  ASSERT_TRUE(w->write().is_ok());
  const std::uint64_t before = w->bytes_on_disk();
  const std::uint64_t first_size = fs::file_size(file_path(t.log(), 1));

  Result<std::size_t> removed = w->remove_files_before(4);  // seqs 1-3 are all below 4
  ASSERT_TRUE(removed.is_ok());
  EXPECT_EQ(*removed, 1u);
  EXPECT_FALSE(fs::exists(file_path(t.log(), 1)));
  EXPECT_EQ(w->bytes_on_disk(), before - first_size);

  removed = w->remove_files_before(6);  // 4-6 holds 6
  ASSERT_TRUE(removed.is_ok());
  EXPECT_EQ(*removed, 0u);

  removed = w->remove_files_before(1000);  // 7-9 is the current file
  ASSERT_TRUE(removed.is_ok());
  EXPECT_EQ(*removed, 1u);
  EXPECT_TRUE(fs::exists(file_path(t.log(), 7)));
  EXPECT_EQ(read_all(t.log()), std::vector<Record>(all.begin() + 6, all.end()));
  w = Result<LogWriter>(internal_error("closed"));  // release the lock, then reopen
  Result<LogWriter> again = LogWriter::open(t.log(), {});
  ASSERT_TRUE(again.is_ok()) << again.status().to_string();
  EXPECT_EQ(again->next_seq(), 10u);
}

TEST(LogTest, OpenRemovesLeftoverTemporaryFiles) {
  TempDir t;
  write_records(t.log(), 1);
  const std::string tmp = file_path(t.log(), 2) + ".tmp";
  write_file(tmp, "half a header");
  ASSERT_TRUE(LogWriter::open(t.log(), {}).is_ok());
  EXPECT_FALSE(fs::exists(tmp));
}

// ---- the reader ----------------------------------------------------------------------

TEST(LogTest, ReadLogOfAMissingDirectoryIsNotFound) {
  TempDir t;
  Result<ReadReport> r = read_log(t.path() + "/nope", [](const Record&) { return true; });
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  expect_contains(r.status().message(), t.path() + "/nope");
}

TEST(LogTest, ReadLogOfADirectoryWithoutLogFilesIsEmpty) {
  TempDir t;
  fs::create_directories(t.path());
  write_file(t.path() + "/notes.txt", "not a log");
  write_file(t.path() + "/taskring-1.log", "not a log name either");
  ReadReport report;
  EXPECT_TRUE(read_all(t.path(), &report).empty());
  EXPECT_EQ(report.records, 0u);
  EXPECT_EQ(report.first_seq, 0u);
  EXPECT_TRUE(report.files.empty());
  EXPECT_FALSE(report.torn_tail);
}

TEST(LogTest, ReadLogIgnoresOtherFilesBesideTheLog) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 3);
  write_file(t.log() + "/README", "hello");
  ReadReport report;
  EXPECT_EQ(read_all(t.log(), &report), all);
  EXPECT_EQ(report.records, 3u);
  EXPECT_EQ(report.first_seq, 1u);
  EXPECT_EQ(report.last_seq, 3u);
}

TEST(LogTest, ReadLogFromSeqSkipsEarlierRecordsAndFiles) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 30, LogOptions{.file_bytes = 300});
  std::vector<Record> got;
  Result<ReadReport> r = read_log(
      t.log(),
      [&](const Record& rec) {
        got.push_back(rec);
        return true;
      },
      17);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(got, std::vector<Record>(all.begin() + 16, all.end()));
  EXPECT_EQ(r->first_seq, 17u);
  EXPECT_LE(r->files.front().first_seq, 17u);
  EXPECT_GT(r->files.front().last_seq, 16u);  // files wholly before 17 were not read
}

TEST(LogTest, ReadLogStopsWhenTheCallbackReturnsFalse) {
  TempDir t;
  write_records(t.log(), 10);
  std::uint64_t seen = 0;
  Result<ReadReport> r = read_log(t.log(), [&](const Record& rec) {
    seen = rec.seq;
    return rec.seq < 4;
  });
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(seen, 4u);
  EXPECT_EQ(r->records, 4u);
  EXPECT_EQ(r->last_seq, 4u);
}

// ---- damage: file headers -------------------------------------------------------------

// Opening for writing and reading both fail with kDataLoss naming `file`
// and, when given, `offset`.
void expect_data_loss(const std::string& dir, const std::string& file, std::optional<std::uint64_t> offset,
                      const std::string& what) {
  const std::uint64_t size_before = fs::file_size(file);
  Result<ReadReport> r = read_log(dir, [](const Record&) { return true; });
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().to_string();
  expect_contains(r.status().message(), file);
  if (offset) expect_contains(r.status().message(), "offset " + std::to_string(*offset) + ":");
  expect_contains(r.status().message(), what);
  Result<LogWriter> w = LogWriter::open(dir, {});
  ASSERT_FALSE(w.is_ok());
  EXPECT_EQ(w.status().code(), StatusCode::kDataLoss) << w.status().to_string();
  EXPECT_EQ(w.status().message(), r.status().message());
  EXPECT_EQ(fs::file_size(file), size_before) << "the writer changed a corrupt file";
}

TEST(LogTest, TruncatedFileHeaderIsDataLoss) {
  TempDir t;
  write_records(t.log(), 0);
  const std::string f = file_path(t.log(), 1);
  fs::resize_file(f, 40);
  expect_data_loss(t.log(), f, 0, "truncated file header");
}

TEST(LogTest, BadFileHeaderCrcIsDataLoss) {
  TempDir t;
  write_records(t.log(), 2);
  const std::string f = file_path(t.log(), 1);
  std::string bytes = read_file(f);
  bytes[internal::kFileCreatedOffset] ^= 1;
  write_file(f, bytes);
  expect_data_loss(t.log(), f, internal::kFileCrcOffset, "file header CRC mismatch");
}

TEST(LogTest, BadMagicIsDataLoss) {
  TempDir t;
  write_records(t.log(), 1);
  const std::string f = file_path(t.log(), 1);
  std::string bytes = read_file(f);
  bytes[5] = '\n';  // what a text-mode copy does to CR LF
  write_file(f, bytes);
  expect_data_loss(t.log(), f, 0, "bad magic");
}

TEST(LogTest, WrongVersionNamesTheVersionFoundAndAccepted) {
  TempDir t;
  write_records(t.log(), 1);
  const std::string f = file_path(t.log(), 1);
  std::string bytes = read_file(f);
  internal::store_u32(bytes.data() + internal::kFileVersionOffset, 2);
  internal::store_u32(bytes.data() + internal::kFileCrcOffset,
                      crc32c(std::string_view(bytes).substr(0, internal::kFileCrcOffset)));
  write_file(f, bytes);
  expect_data_loss(t.log(), f, internal::kFileVersionOffset, "format version 2; this build reads version 1");
}

TEST(LogTest, FileNameDisagreeingWithItsHeaderIsDataLoss) {
  TempDir t;
  write_records(t.log(), 1);
  fs::rename(file_path(t.log(), 1), file_path(t.log(), 5));
  expect_data_loss(t.log(), file_path(t.log(), 5), internal::kFileFirstSeqOffset,
                   "the header's first seq is 1 but the file name says 5");
}

// ---- damage: the torn tail -------------------------------------------------------------

// The log of 5 records whose last file is cut or altered by `damage`; checks
// that read_log reports a torn tail at `offset`, that open truncates it there
// and reports it, and that the first 4 records remain.
void expect_torn_tail_at_last_record(const std::function<void(const std::string& file, std::uint64_t last_offset,
                                                              std::uint64_t end)>& damage,
                                     const std::string& reason) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 5);
  const std::vector<std::uint64_t> at = offsets(all);
  const std::string f = file_path(t.log(), 1);
  damage(f, at[4], at[5]);
  const std::uint64_t damaged_size = fs::file_size(f);

  ReadReport report;
  EXPECT_EQ(read_all(t.log(), &report), std::vector<Record>(all.begin(), all.begin() + 4));
  EXPECT_TRUE(report.torn_tail);
  EXPECT_EQ(report.tail_file, f);
  EXPECT_EQ(report.tail_offset, at[4]);
  EXPECT_EQ(report.tail_bytes, damaged_size - at[4]);
  expect_contains(report.tail_reason, reason);
  EXPECT_EQ(fs::file_size(f), damaged_size) << "read_log must not change files";

  RepairReport repair;
  Result<LogWriter> w = LogWriter::open(t.log(), {}, &repair);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  EXPECT_TRUE(repair.truncated);
  EXPECT_EQ(repair.file, f);
  EXPECT_EQ(repair.offset, at[4]);
  EXPECT_EQ(repair.bytes_dropped, damaged_size - at[4]);
  expect_contains(repair.reason, reason + " at offset " + std::to_string(at[4]));
  EXPECT_EQ(fs::file_size(f), at[4]);
  EXPECT_EQ(w->next_seq(), 5u);

  // The writer goes on from there.
  Record r = sample(RecordType::kFreed, 99);
  EXPECT_EQ(w->append(r), 5u);
  ASSERT_TRUE(w->write().is_ok());
  std::vector<Record> expected(all.begin(), all.begin() + 4);
  expected.push_back(r);
  ReadReport after;
  EXPECT_EQ(read_all(t.log(), &after), expected);
  EXPECT_FALSE(after.torn_tail);
}

TEST(LogTest, TruncatedRecordHeaderAtTheTailIsTorn) {
  expect_torn_tail_at_last_record(
      [](const std::string& f, std::uint64_t last, std::uint64_t) { fs::resize_file(f, last + 7); },
      "truncated header");
}

TEST(LogTest, TruncatedRecordBodyAtTheTailIsTorn) {
  expect_torn_tail_at_last_record(
      [](const std::string& f, std::uint64_t, std::uint64_t end) { fs::resize_file(f, end - 3); },
      "truncated body");
}

TEST(LogTest, FlippedBitsInTheLastRecordAreATornTail) {
  expect_torn_tail_at_last_record(
      [](const std::string& f, std::uint64_t last, std::uint64_t) {
        std::string bytes = read_file(f);
        bytes[last + kRecordHeaderSize + 3] ^= 0x24;
        write_file(f, bytes);
      },
      "CRC mismatch");
}

TEST(LogTest, GarbageLengthAtTheTailIsTorn) {
  expect_torn_tail_at_last_record(
      [](const std::string& f, std::uint64_t last, std::uint64_t) {
        std::string bytes = read_file(f);
        internal::store_u32(bytes.data() + last + internal::kRecordLengthOffset, 0xFFFFFFF0);
        write_file(f, bytes);
      },
      "above the limit");
}

TEST(LogTest, ZerosAfterTheLastRecordAreATornTail) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 3);
  const std::string f = file_path(t.log(), 1);
  const std::uint64_t end = fs::file_size(f);
  append_file(f, std::string(4096, '\0'));  // a crash after the size grew, before the data
  RepairReport repair;
  Result<LogWriter> w = LogWriter::open(t.log(), {}, &repair);
  ASSERT_TRUE(w.is_ok()) << w.status().to_string();
  EXPECT_TRUE(repair.truncated);
  EXPECT_EQ(repair.offset, end);
  EXPECT_EQ(repair.bytes_dropped, 4096u);
  EXPECT_EQ(w->next_seq(), 4u);
}

// ---- damage: corruption before the tail -------------------------------------------------

TEST(LogTest, FlippedBitsInAMiddleRecordAreDataLossNotATornTail) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 5);
  const std::vector<std::uint64_t> at = offsets(all);
  const std::string f = file_path(t.log(), 1);
  std::string bytes = read_file(f);
  bytes[at[2] + kRecordHeaderSize + 1] ^= 0x01;
  write_file(f, bytes);
  expect_data_loss(t.log(), f, at[2], "CRC mismatch");
  Result<ReadReport> r = read_log(t.log(), [](const Record&) { return true; });
  expect_contains(r.status().message(), "a valid record (seq 4) follows at offset " + std::to_string(at[3]));
}

TEST(LogTest, TornLookingRecordInAnOlderFileIsDataLoss) {
  TempDir t;
  write_records(t.log(), 6, LogOptions{.file_bytes = 200});
  const std::string f = file_path(t.log(), 1);
  const std::uint64_t size = fs::file_size(f);
  fs::resize_file(f, size - 5);
  expect_data_loss(t.log(), f, std::nullopt, "a newer file follows, so this is corruption, not a torn tail");
}

TEST(LogTest, SequenceGapInsideAFileIsDataLoss) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 3);
  const std::string f = file_path(t.log(), 1);
  const std::uint64_t end = fs::file_size(f);
  Record skip = sample(RecordType::kStarted, 5);
  skip.seq = 5;  // 4 is missing
  append_file(f, encoded(skip));
  expect_data_loss(t.log(), f, end, "sequence gap: record seq 5, expected 4");
}

TEST(LogTest, RepeatedSequenceNumberIsDataLoss) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 3);
  const std::string f = file_path(t.log(), 1);
  const std::uint64_t end = fs::file_size(f);
  append_file(f, encoded(all[2]));
  expect_data_loss(t.log(), f, end, "sequence gap: record seq 3, expected 4");
}

TEST(LogTest, SequenceGapBetweenFilesIsDataLoss) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 12, LogOptions{.file_bytes = 200});
  ReadReport report;
  read_all(t.log(), &report);
  ASSERT_GE(report.files.size(), 3u);
  fs::remove(report.files[1].path);
  const std::string& third = report.files[2].path;
  expect_data_loss(t.log(), third, internal::kFileFirstSeqOffset,
                   "sequence gap between files: it starts at seq " + std::to_string(report.files[2].first_seq));
}

TEST(LogTest, UnknownTypeInAFileIsDataLoss) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 3);
  const std::vector<std::uint64_t> at = offsets(all);
  const std::string f = file_path(t.log(), 1);
  std::string bytes = read_file(f);
  // The last record: with a valid CRC it is no torn write, so not repaired.
  std::string rec = bytes.substr(at[2]);
  rec[internal::kRecordTypeOffset] = 77;
  reseal(rec);
  write_file(f, bytes.substr(0, at[2]) + rec);
  expect_data_loss(t.log(), f, at[2], "unknown type 77");
}

TEST(LogTest, LengthAboveTheLimitInAMiddleRecordIsDataLoss) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 4);
  const std::vector<std::uint64_t> at = offsets(all);
  const std::string f = file_path(t.log(), 1);
  std::string bytes = read_file(f);
  internal::store_u32(bytes.data() + at[1] + internal::kRecordLengthOffset, kMaxRecordBody + 1);
  write_file(f, bytes);
  expect_data_loss(t.log(), f, at[1], "above the limit");
}

TEST(LogTest, FieldOverrunningItsBodyInAFileIsDataLoss) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), {});
  ASSERT_TRUE(w.is_ok());
  Record a = sample(RecordType::kSucceeded, 1);
  w->append(a);
  ASSERT_TRUE(w->write().is_ok());
  w = Result<LogWriter>(internal_error("closed"));
  const std::string f = file_path(t.log(), 1);
  std::string bytes = read_file(f);
  std::string rec = bytes.substr(kFileHeaderSize);
  internal::store_u32(rec.data() + kRecordHeaderSize + internal::kFixedBodySize, 5000);
  reseal(rec);
  write_file(f, bytes.substr(0, kFileHeaderSize) + rec);
  expect_data_loss(t.log(), f, kFileHeaderSize, "field result overruns the body");
}

// ---- the follower ---------------------------------------------------------------------

std::vector<Record> poll_all(LogFollower& f) {
  std::vector<Record> out;
  Result<std::uint64_t> n = f.poll([&](const Record& r) {
    out.push_back(r);
    return true;
  });
  EXPECT_TRUE(n.is_ok()) << n.status().to_string();
  if (n.is_ok()) { EXPECT_EQ(*n, out.size()); }
  return out;
}

TEST(LogTest, FollowerOfAMissingDirectoryIsNotFound) {
  TempDir t;
  Result<LogFollower> f = LogFollower::open(t.path() + "/nope");
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
}

TEST(LogTest, FollowerStartsAfterTheLastRecordAndDeliversNewOnesAcrossFiles) {
  TempDir t;
  Result<LogWriter> w = LogWriter::open(t.log(), LogOptions{.file_bytes = 250});
  ASSERT_TRUE(w.is_ok());
  for (int i = 0; i < 5; ++i) {
    Record r = sample(RecordType::kStarted, static_cast<std::uint64_t>(i));
    w->append(r);
  }
  ASSERT_TRUE(w->write().is_ok());
  Result<LogFollower> f = LogFollower::open(t.log());
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(f->next_seq(), 6u);
  EXPECT_TRUE(poll_all(*f).empty());
  std::vector<Record> more;
  for (int i = 0; i < 10; ++i) {
    Record r = sample(RecordType::kFreed, static_cast<std::uint64_t>(i));
    w->append(r);
    more.push_back(r);
    if (i % 3 == 0) { ASSERT_TRUE(w->write().is_ok()); }
  }
  ASSERT_TRUE(w->write().is_ok());
  EXPECT_EQ(poll_all(*f), more);
  EXPECT_EQ(f->next_seq(), 16u);
}

TEST(LogTest, FollowerFromSeqDeliversFromThereAndWaitsForAPartialRecord) {
  TempDir t;
  std::vector<Record> all = write_records(t.log(), 6, LogOptions{.file_bytes = 200});
  Result<LogFollower> f = LogFollower::open(t.log(), 3);
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(poll_all(*f), std::vector<Record>(all.begin() + 2, all.end()));
  // Half a record, as a reader may see one while it is being written.
  ReadReport report;
  read_all(t.log(), &report);
  const std::string last = report.files.back().path;
  Record next = sample(RecordType::kStarted, 7);
  next.seq = 7;
  const std::string bytes = encoded(next);
  append_file(last, bytes.substr(0, 30));
  EXPECT_TRUE(poll_all(*f).empty());
  append_file(last, bytes.substr(30));
  EXPECT_EQ(poll_all(*f), std::vector<Record>{next});
}

TEST(LogTest, FollowerStopsWhenTheCallbackReturnsFalse) {
  TempDir t;
  write_records(t.log(), 5);
  Result<LogFollower> f = LogFollower::open(t.log(), 1);
  ASSERT_TRUE(f.is_ok());
  Result<std::uint64_t> n = f->poll([](const Record& r) { return r.seq < 2; });
  ASSERT_TRUE(n.is_ok());
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(f->next_seq(), 3u);
  EXPECT_EQ(poll_all(*f).size(), 3u);
}

TEST(LogTest, FollowerOfAnEmptyDirectoryWaitsForTheFirstFile) {
  TempDir t;
  fs::create_directories(t.log());
  Result<LogFollower> f = LogFollower::open(t.log());
  ASSERT_TRUE(f.is_ok());
  EXPECT_TRUE(poll_all(*f).empty());
  std::vector<Record> all = write_records(t.log(), 2);
  EXPECT_EQ(poll_all(*f), all);
}

// ---- randomized: cut the last file anywhere -----------------------------------------------

std::uint64_t seed_for_test() {
  std::uint64_t seed = 0;
  if (const char* s = std::getenv("TASKRING_TEST_SEED")) {
    seed = std::strtoull(s, nullptr, 10);
  } else {
    seed = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  std::cout << "[ seed     ] TASKRING_TEST_SEED=" << seed << std::endl;
  return seed;
}

Record random_record(std::mt19937_64& rng) {
  auto pick = [&](std::uint64_t n) { return rng() % n; };
  auto text = [&](std::size_t max) {
    std::string s(pick(max + 1), '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  Record r;
  r.type = static_cast<RecordType>(1 + pick(kRecordTypeCount - 1));
  r.wall_ns = static_cast<std::int64_t>(rng());
  r.epoch = pick(4);
  r.task_id = rng();
  r.state_word = rng();
  r.pid = static_cast<std::uint32_t>(rng());
  r.aux = static_cast<std::uint32_t>(pick(8));
  if (pick(3) == 0) {
    r.spec = TaskSpec{.queue = text(kMaxQueueNameLength),
                      .name = text(kMaxTaskNameLength),
                      .priority = static_cast<std::uint8_t>(pick(4)),
                      .max_attempts = static_cast<std::uint8_t>(rng()),
                      .max_crashes = static_cast<std::uint8_t>(rng()),
                      .detached = pick(2) == 0,
                      .time_limit_ms = static_cast<std::uint32_t>(rng()),
                      .run_at_wall_ns = static_cast<std::int64_t>(rng()),
                      .payload = text(300)};
  }
  if (pick(3) == 0) r.result = text(200);
  if (pick(5) == 0) r.text = text(40);
  if (pick(6) == 0) {
    r.other_epoch = rng();
    r.other_id = rng();
  }
  r.payload_missing = pick(7) == 0;
  r.result_missing = pick(7) == 0;
  return r;
}

TEST(LogTest, RandomCutOfTheLastFileTruncatesToTheWholeRecords) {
  const std::uint64_t seed = seed_for_test();
  SCOPED_TRACE("TASKRING_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 25; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    TempDir t;
    const LogOptions options{.file_bytes = 200 + rng() % 4000};
    std::vector<Record> all;
    {
      Result<LogWriter> w = LogWriter::open(t.log(), options);
      ASSERT_TRUE(w.is_ok()) << w.status().to_string();
      const int n = 1 + static_cast<int>(rng() % 80);
      for (int i = 0; i < n; ++i) {
        Record r = random_record(rng);
        w->append(r);
        all.push_back(r);
        if (rng() % 4 == 0) { ASSERT_TRUE(w->write().is_ok()); }
        if (rng() % 20 == 0) { ASSERT_TRUE(w->start_new_file().is_ok()); }
      }
      ASSERT_TRUE(w->write().is_ok());
    }
    ReadReport before;
    ASSERT_EQ(read_all(t.log(), &before), all);
    const FileInfo last = before.files.back();
    // Where each record of the last file ends.
    std::vector<std::uint64_t> ends;
    std::uint64_t at = kFileHeaderSize;
    for (std::uint64_t s = last.first_seq; s <= last.last_seq; ++s) {
      at += encoded_size(all[s - 1]);
      ends.push_back(at);
    }
    ASSERT_EQ(at, last.bytes);
    const std::uint64_t cut = kFileHeaderSize + rng() % (last.bytes - kFileHeaderSize + 1);
    fs::resize_file(last.path, cut);
    std::uint64_t whole = last.first_seq - 1;  // the last record wholly before the cut
    std::uint64_t good_end = kFileHeaderSize;
    for (std::size_t i = 0; i < ends.size() && ends[i] <= cut; ++i) {
      whole = last.first_seq + i;
      good_end = ends[i];
    }

    RepairReport repair;
    Result<LogWriter> w = LogWriter::open(t.log(), options, &repair);
    ASSERT_TRUE(w.is_ok()) << "cut at " << cut << ": " << w.status().to_string();
    EXPECT_EQ(w->next_seq(), whole + 1) << "cut at " << cut;
    EXPECT_EQ(repair.truncated, cut != good_end) << "cut at " << cut;
    if (cut != good_end) {
      EXPECT_EQ(repair.offset, good_end);
      EXPECT_EQ(repair.bytes_dropped, cut - good_end);
    }
    EXPECT_EQ(fs::file_size(last.path), good_end);
    w = Result<LogWriter>(internal_error("closed"));
    EXPECT_EQ(read_all(t.log()), std::vector<Record>(all.begin(), all.begin() + static_cast<long>(whole)));
  }
}

}  // namespace
}  // namespace taskring::log
