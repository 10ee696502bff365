// libFuzzer target for the durable log's decoder and reader
// (engine/src/log.cc). Each input is used twice:
//
//  1. As a run of records: decode() from the front, advancing by `used`,
//     until it fails. Every record it accepts must encode back to exactly
//     the bytes it was decoded from (the format has one encoding per record).
//  2. As a log file, written to a scratch directory: as-is when it starts
//     with the file magic (so header checks are fuzzed too; it is named
//     after the first seq in its header), otherwise behind a valid header
//     whose first seq is that of the input's first record. Then
//       - read_log must succeed or fail with kDataLoss, and deliver
//         consecutive seqs;
//       - LogFollower must deliver the same records (before any repair);
//       - LogWriter::open must fail exactly when read_log did, with the same
//         message, and after its repair read_log must find the same records
//         and no torn tail.
// Any other outcome aborts, which libFuzzer reports as a crash. The scratch
// directory is on /dev/shm when there is one, where fsync costs nothing.
//
// Built with clang++ -fsanitize=fuzzer,address,undefined by tests/fuzz/CMakeLists.txt;
// run by scripts/test.sh ("== fuzz: log reader").
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "log_internal.h"
#include "taskring/log.h"

namespace {

using namespace taskring;
using namespace taskring::log;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "log_reader_fuzz: %s\n", what.c_str());
  std::abort();
}

// Never destroyed, so that the atexit handler that removes it can still use it.
const std::string& scratch_dir() {
  static const std::string* const dir = [] {
    auto* templ = new std::string(std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
    *templ += "/taskring-log-fuzz-XXXXXX";
    if (mkdtemp(templ->data()) == nullptr) fail("mkdtemp failed");
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return templ;
  }();
  return *dir;
}

void clear_dir(const std::string& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) std::filesystem::remove_all(e.path());
}

void decode_run(std::string_view bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    std::size_t used = 0;
    Result<Record> r = decode(bytes.substr(off), used);
    if (!r.is_ok()) {
      if (r.status().code() != StatusCode::kDataLoss) fail("decode: " + r.status().to_string());
      return;
    }
    if (used < internal::kMinRecordSize || used > bytes.size() - off) fail("decode: bad used");
    if (encoded_size(*r) != used) fail("encoded_size differs from used");
    std::string again;
    encode(*r, again);
    if (again != bytes.substr(off, used)) fail("re-encoding differs from the decoded bytes");
    off += used;
  }
}

struct Read {
  Status status;
  ReadReport report;
  std::vector<Record> records;
};

Read read_everything(const std::string& dir) {
  Read out;
  Result<ReadReport> r = read_log(dir, [&](const Record& rec) {
    if (!out.records.empty() && rec.seq != out.records.back().seq + 1) fail("read_log: seqs not consecutive");
    out.records.push_back(rec);
    return true;
  });
  if (r.is_ok()) {
    out.report = *r;
    if (out.report.records != out.records.size()) fail("read_log: records miscounted");
  } else {
    out.status = r.status();
    if (out.status.code() != StatusCode::kDataLoss) fail("read_log: " + out.status.to_string());
  }
  return out;
}

void read_as_file(std::string_view bytes) {
  const std::string& dir = scratch_dir();
  clear_dir(dir);
  std::string file;
  std::uint64_t first_seq = 1;
  if (bytes.size() >= sizeof internal::kFileMagic &&
      bytes.substr(0, sizeof internal::kFileMagic) ==
          std::string_view(reinterpret_cast<const char*>(internal::kFileMagic), sizeof internal::kFileMagic)) {
    if (bytes.size() >= internal::kFileFirstSeqOffset + 8) {
      first_seq = internal::load_u64(bytes.data() + internal::kFileFirstSeqOffset);
    }
    if (first_seq == 0) first_seq = 1;
    file = bytes;
  } else {
    if (bytes.size() >= internal::kRecordSeqOffset + 8) {
      first_seq = internal::load_u64(bytes.data() + internal::kRecordSeqOffset);
    }
    if (first_seq == 0) first_seq = 1;
    file = internal::encode_file_header(first_seq, 0);
    file.append(bytes);
  }
  {
    std::ofstream out(dir + "/" + internal::file_name(first_seq), std::ios::binary);
    out.write(file.data(), static_cast<std::streamsize>(file.size()));
    if (!out) fail("cannot write the scratch file");
  }

  const Read before = read_everything(dir);

  Result<LogFollower> follower = LogFollower::open(dir, 1);
  if (!follower.is_ok()) {
    if (before.status.is_ok() || follower.status().code() != StatusCode::kDataLoss) {
      fail("LogFollower::open: " + follower.status().to_string());
    }
  } else {
    std::uint64_t n = 0;
    Result<std::uint64_t> polled = follower->poll([&](const Record& r) {
      if (n >= before.records.size() && before.status.is_ok()) fail("follower: more records than read_log");
      if (before.status.is_ok() && !(r == before.records[n])) fail("follower: a record differs from read_log's");
      ++n;
      return true;
    });
    if (before.status.is_ok() && (!polled.is_ok() || n != before.records.size())) {
      fail("follower: " + (polled.is_ok() ? std::to_string(n) + " records" : polled.status().to_string()));
    }
  }

  Result<LogWriter> writer = LogWriter::open(dir, {});
  if (!before.status.is_ok()) {
    if (writer.is_ok()) fail("LogWriter::open accepted what read_log refused: " + before.status.to_string());
    if (writer.status().message() != before.status.message()) {
      fail("LogWriter::open and read_log disagree: " + writer.status().to_string() + " / " +
           before.status.to_string());
    }
    return;
  }
  if (!writer.is_ok()) fail("LogWriter::open refused what read_log accepted: " + writer.status().to_string());
  writer = Result<LogWriter>(internal_error("closed"));
  const Read after = read_everything(dir);
  if (!after.status.is_ok()) fail("read_log after repair: " + after.status.to_string());
  if (after.report.torn_tail) fail("read_log after repair: still a torn tail");
  if (after.records != before.records) fail("read_log after repair: different records");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  decode_run(bytes);
  read_as_file(bytes);
  return 0;
}
