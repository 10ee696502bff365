// Writes the seed corpus of log_reader_fuzz into the directory given as its
// argument: one encoded record of each type (with the optional parts that
// type uses), a run of records, whole log files (one clean, one with a torn
// tail, one empty). Generated, not committed, so that it always matches the
// format this build writes.
#include <cstdio>
#include <fstream>
#include <string>

#include "log_internal.h"
#include "taskring/log.h"

namespace {

using namespace taskring::log;

taskring::log::Record record_of(RecordType type, std::uint64_t seq) {
  Record r;
  r.type = type;
  r.seq = seq;
  r.wall_ns = 1735689600000000000 + static_cast<std::int64_t>(seq);
  r.epoch = 1;
  r.task_id = (std::uint64_t{1} << 32) | seq;
  r.state_word = 0x0000000101000001;
  r.pid = 4242;
  switch (type) {
    case RecordType::kSegmentAttached: r.text = "jobs"; r.aux = 4096; break;
    case RecordType::kSubmitted: r.spec = TaskSpec{.queue = "default", .name = "echo", .payload = "hi"}; break;
    case RecordType::kTaskSnapshot:
      r.spec = TaskSpec{.queue = "q", .name = "sleep", .priority = 0, .max_attempts = 3, .max_crashes = 2,
                        .detached = true, .time_limit_ms = 1000, .run_at_wall_ns = 5, .payload = "100"};
      r.result = "done";
      break;
    case RecordType::kSucceeded: r.result = "ok"; break;
    case RecordType::kFailed: r.result = "error"; r.result_missing = false; break;
    case RecordType::kCancelled: r.result_missing = true; break;
    case RecordType::kResyncBegin: r.text = "start"; r.aux = 1; break;
    case RecordType::kRecovered: r.other_epoch = 1; r.other_id = 7; break;
    default: r.aux = 2; break;
  }
  return r;
}

void put(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::ofstream out(dir + "/" + name, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_log_corpus DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  std::string run;
  for (int t = 1; t < kRecordTypeCount; ++t) {
    std::string one;
    encode(record_of(static_cast<RecordType>(t), 1), one);
    put(dir, "record-" + std::string(record_type_name(static_cast<RecordType>(t))), one);
    encode(record_of(static_cast<RecordType>(t), static_cast<std::uint64_t>(t)), run);
  }
  put(dir, "run", run);
  const std::string file = internal::encode_file_header(1, 1735689600000000000) + run;
  put(dir, "file", file);
  put(dir, "file-torn", file.substr(0, file.size() - 7));
  put(dir, "file-empty", internal::encode_file_header(1, 0));
  return 0;
}
