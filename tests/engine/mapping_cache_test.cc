// One mapping per segment per process: Client and Worker share it (so TSan
// relates their accesses), and a segment re-created under the same name is
// mapped afresh rather than served from the stale mapping.
#include <gtest/gtest.h>

#include "engine_internal.h"
#include "taskring/admin.h"
#include "taskring/client.h"
#include "test_support.h"

namespace taskring {
namespace {

TEST(MappingCacheTest, SecondAttachSharesTheMapping) {
  testing::SegmentGuard guard(testing::unique_segment("map"));
  ASSERT_TRUE(create_segment(guard.name(), testing::small_config()).is_ok());
  auto a = detail::Engine::attach(guard.name(), ipc::Access::kReadWrite);
  auto b = detail::Engine::attach(guard.name(), ipc::Access::kReadWrite);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(a->get(), b->get());
  EXPECT_EQ((*a)->segment().base(), (*b)->segment().base());
  // A read-only attach is a different mapping.
  auto r = detail::Engine::attach(guard.name(), ipc::Access::kReadOnly);
  ASSERT_TRUE(r.is_ok());
  EXPECT_NE(r->get(), a->get());
}

TEST(MappingCacheTest, RecreatedSegmentIsMappedAfresh) {
  testing::SegmentGuard guard(testing::unique_segment("remap"));
  EngineConfig first = testing::small_config();
  ASSERT_TRUE(create_segment(guard.name(), first).is_ok());
  auto old_client = Client::attach(guard.name());
  ASSERT_TRUE(old_client.is_ok());
  ASSERT_TRUE(destroy_segment(guard.name()).is_ok());
  EngineConfig second = testing::small_config();
  second.queues = {"default", "other"};
  ASSERT_TRUE(create_segment(guard.name(), second).is_ok());
  // old_client still holds the old mapping; a new attach must see the new segment.
  auto fresh = Client::attach(guard.name());
  ASSERT_TRUE(fresh.is_ok()) << fresh.status().to_string();
  EXPECT_EQ(fresh->queues(), second.queues);
  EXPECT_EQ(old_client->queues(), first.queues);
  SubmitOptions o;
  o.queue = "other";
  EXPECT_TRUE(fresh->submit("noop", "", o).is_ok());
}

}  // namespace
}  // namespace taskring
