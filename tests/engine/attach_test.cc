// The engine's own checks on attach, after the ipc header checks: a stored
// configuration that fails validation, and sizes recorded by the shared
// structures that disagree with it, are refused as data loss.
#include <gtest/gtest.h>

#include <cstring>

#include "engine_internal.h"
#include "taskring/admin.h"
#include "taskring/client.h"
#include "test_support.h"

namespace taskring {
namespace {

// Maps the segment raw and hands `edit` the engine section `id`.
template <typename Edit>
void edit_section(const std::string& name, std::uint32_t id, Edit edit) {
  auto seg = ipc::Segment::attach(name, detail::kLayoutVersion);
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  edit(seg->section_bytes(id).data());
}

TEST(EngineAttachTest, BadStoredQueueNameIsDataLoss) {
  testing::SegmentGuard guard(testing::unique_segment("badq"));
  EngineConfig c = testing::small_config();
  c.queues = {"default", "mail"};
  ASSERT_TRUE(create_segment(guard.name(), c).is_ok());
  edit_section(guard.name(), detail::kSecQueues, [](std::byte* p) {
    auto* q = reinterpret_cast<detail::QueueEntry*>(p);
    q[1].name[1] = '/';  // "m/il": not an accepted character
  });
  auto client = Client::attach(guard.name());
  ASSERT_FALSE(client.is_ok());
  EXPECT_EQ(client.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(client.status().message().find("queue name 'm/il'"), std::string::npos) << client.status().message();
}

TEST(EngineAttachTest, RingCapacityDisagreeingWithConfigIsDataLoss) {
  testing::SegmentGuard guard(testing::unique_segment("badring"));
  ASSERT_TRUE(create_segment(guard.name(), testing::small_config()).is_ok());
  edit_section(guard.name(), detail::kSecRings,
               [](std::byte* p) { reinterpret_cast<ipc::RingControl*>(p)->capacity = 7; });
  auto client = Client::attach(guard.name());
  ASSERT_FALSE(client.is_ok());
  EXPECT_EQ(client.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(client.status().message().find("records capacity 7"), std::string::npos) << client.status().message();
}

}  // namespace
}  // namespace taskring
