// Version mismatches across processes: a process of this build refuses a
// segment whose header carries another layout version (or that was never
// finished), with an error naming both versions; destroy still removes it.
// The control case shows a child of this build using a good segment.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "layout_internal.h"
#include "mp_harness.h"
#include "taskring/admin.h"
#include "taskring/ipc/layout.h"
#include "taskring/ipc/segment.h"
#include "taskring/status.h"

namespace taskring::stress {
namespace {

using std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint32_t kOtherVersion = detail::kLayoutVersion + 1;

// Child exit codes of the refusal checks (besides kExitOk).
enum : int {
  kClientAttached = 30, kClientWrongCode, kClientMessage,
  kWorkerAttached, kWorkerWrongCode, kWorkerMessage,
  kSnapshotRead, kSnapshotWrongCode,
};

// In the child: every way of attaching must fail with `code`, and the
// message must contain each of `needles`.
int expect_refused(const std::string& segment, StatusCode code, const std::vector<std::string>& needles) {
  const auto has_all = [&](const std::string& m) {
    for (const auto& n : needles) {
      if (m.find(n) == std::string::npos) return false;
    }
    return true;
  };
  auto c = Client::attach(segment);
  if (c) return kClientAttached;
  if (c.status().code() != code) {
    child_log("client: %s", c.status().to_string().c_str());
    return kClientWrongCode;
  }
  if (!has_all(c.status().message())) {
    child_log("client message: %s", c.status().message().c_str());
    return kClientMessage;
  }
  auto w = Worker::attach(segment);
  if (w) return kWorkerAttached;
  if (w.status().code() != code) {
    child_log("worker: %s", w.status().to_string().c_str());
    return kWorkerWrongCode;
  }
  if (!has_all(w.status().message())) {
    child_log("worker message: %s", w.status().message().c_str());
    return kWorkerMessage;
  }
  auto s = read_snapshot(segment);
  if (s) return kSnapshotRead;
  if (s.status().code() != code) {
    child_log("snapshot: %s", s.status().to_string().c_str());
    return kSnapshotWrongCode;
  }
  return kExitOk;
}

// Rewrites one header field of an existing segment through a raw mapping.
template <typename Edit>
void edit_header(const std::string& name, Edit&& edit) {
  auto raw = ipc::Segment::attach(name, detail::kLayoutVersion);
  ASSERT_TRUE(raw.is_ok()) << raw.status().to_string();
  edit(*reinterpret_cast<ipc::SegmentHeader*>(raw->base()));
}

int run_child(const std::function<int()>& body) {
  const pid_t pid = spawn(body);
  const auto r = reap({pid}, steady_clock::now() + 60s);
  EXPECT_TRUE(r[0].exited) << describe(r[0]);
  return r[0].exited ? r[0].code : -1;
}

TEST(AttachRefusalTest, ChildOfThisBuildUsesAGoodSegment) {
  testing::SegmentGuard guard(testing::unique_segment("ver-ok"));
  ASSERT_TRUE(create_segment(guard.name(), testing::small_config()).is_ok());
  const int rc = run_child([&] {
    auto c = Client::attach(guard.name());
    auto w = Worker::attach(guard.name());
    if (!c || !w) return static_cast<int>(kExitAttach);
    (*w)->register_builtins();
    auto id = c->submit("echo", "across the fork");
    if (!id) return static_cast<int>(kExitSubmit);
    if (!(*w)->run_tasks(1).is_ok()) return static_cast<int>(kExitRun);
    auto out = c->wait(*id, 10'000'000'000);
    if (!out) return static_cast<int>(kExitWait);
    return out->value == "across the fork" ? static_cast<int>(kExitOk) : static_cast<int>(kExitWrongResult);
  });
  EXPECT_EQ(rc, kExitOk) << exit_name(rc);
}

TEST(AttachRefusalTest, ChildRefusesASegmentOfAnotherLayoutVersion) {
  testing::SegmentGuard guard(testing::unique_segment("ver-other"));
  ASSERT_TRUE(create_segment(guard.name(), testing::small_config()).is_ok());
  edit_header(guard.name(), [](ipc::SegmentHeader& h) { h.layout_version = kOtherVersion; });
  const int rc = run_child([&] {
    return expect_refused(guard.name(), StatusCode::kFailedPrecondition,
                          {"layout version " + std::to_string(kOtherVersion),
                           "reads version " + std::to_string(detail::kLayoutVersion), guard.name()});
  });
  EXPECT_EQ(rc, kExitOk) << "child exit " << rc;
  // The parent is refused the same way, and destroy removes such a segment
  // without the closing handshake.
  EXPECT_EQ(Client::attach(guard.name()).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(destroy_segment(guard.name()).is_ok());
  EXPECT_FALSE(ipc::Segment::exists(guard.name()));
}

TEST(AttachRefusalTest, ChildRefusesASegmentWhoseCreatorNeverFinished) {
  testing::SegmentGuard guard(testing::unique_segment("ver-unready"));
  ASSERT_TRUE(create_segment(guard.name(), testing::small_config()).is_ok());
  edit_header(guard.name(), [](ipc::SegmentHeader& h) { h.ready.store(0, std::memory_order_relaxed); });
  const int rc = run_child([&] {
    return expect_refused(guard.name(), StatusCode::kFailedPrecondition, {"not ready"});
  });
  EXPECT_EQ(rc, kExitOk) << "child exit " << rc;
}

TEST(AttachRefusalTest, ChildRefusesASegmentWithAnotherHeaderVersion) {
  testing::SegmentGuard guard(testing::unique_segment("ver-header"));
  ASSERT_TRUE(create_segment(guard.name(), testing::small_config()).is_ok());
  edit_header(guard.name(), [](ipc::SegmentHeader& h) { h.header_version = ipc::kHeaderVersion + 7; });
  const int rc = run_child([&] {
    return expect_refused(guard.name(), StatusCode::kFailedPrecondition,
                          {"header version " + std::to_string(ipc::kHeaderVersion + 7)});
  });
  EXPECT_EQ(rc, kExitOk) << "child exit " << rc;
}

}  // namespace
}  // namespace taskring::stress
