// Segment (ipc/include/taskring/ipc/segment.h): create, attach, remove, and
// every reason attach refuses a segment, each checked for a message that
// names the segment and the offending value. Damage is done from outside,
// through /dev/shm/NAME, as a stray process or a crash would do it.
#include "taskring/ipc/segment.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "taskring/ipc/futex.h"
#include "test_support.h"

namespace taskring::ipc {
namespace {

using taskring::testing::SegmentGuard;
using taskring::testing::unique_segment;

constexpr std::uint32_t kLayout = 7;
// Two sections: 100 x 8 bytes at 4096 and 5000 x 1 byte at 8192; 16384 in all.
constexpr std::uint64_t kSection1Offset = kHeaderBytes;
constexpr std::uint64_t kSection2Offset = 2 * kSectionAlign;
constexpr std::uint64_t kTotalSize = 4 * kSectionAlign;

CreateOptions two_sections() {
  CreateOptions o;
  o.layout_version = kLayout;
  o.sections = {{1, 8, 100}, {2, 1, 5000}};
  return o;
}

// Fills both sections with a recognisable pattern.
Status write_pattern(Segment& s) {
  std::span<std::byte> a = s.section_bytes(1);
  std::span<std::byte> b = s.section_bytes(2);
  if (a.size() != 800 || b.size() != 5000) return internal_error("unexpected section sizes");
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::byte>(i % 253);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::byte>(i % 251 + 1);
  return Status::ok();
}

::testing::AssertionResult has_pattern(const Segment& s) {
  std::span<std::byte> a = s.section_bytes(1);
  std::span<std::byte> b = s.section_bytes(2);
  if (a.size() != 800 || b.size() != 5000) return ::testing::AssertionFailure() << "section sizes";
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i] != static_cast<std::byte>(i % 253)) return ::testing::AssertionFailure() << "section 1 byte " << i;
  }
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (b[i] != static_cast<std::byte>(i % 251 + 1)) return ::testing::AssertionFailure() << "section 2 byte " << i;
  }
  return ::testing::AssertionSuccess();
}

Result<Segment> create(const std::string& name, const CreateOptions& o = two_sections()) {
  return Segment::create(name, o, write_pattern);
}

// A status with `code` whose message contains every one of `parts`.
::testing::AssertionResult is_error(const Status& st, StatusCode code, std::initializer_list<std::string> parts) {
  if (st.code() != code) {
    return ::testing::AssertionFailure() << "expected " << status_code_name(code) << ", got " << st.to_string();
  }
  for (const std::string& p : parts) {
    if (st.message().find(p) == std::string::npos) {
      return ::testing::AssertionFailure() << "message lacks \"" << p << "\": " << st.to_string();
    }
  }
  return ::testing::AssertionSuccess() << st.to_string();
}

std::string shm_path(const std::string& name) { return "/dev/shm/" + name; }

// Overwrites bytes of the segment file, as another process could.
template <typename T>
void poke(const std::string& name, std::uint64_t offset, const T& value) {
  const int fd = ::open(shm_path(name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << shm_path(name) << ": " << std::strerror(errno);
  ASSERT_EQ(::pwrite(fd, &value, sizeof value, static_cast<off_t>(offset)), static_cast<ssize_t>(sizeof value));
  ::close(fd);
}

void resize_file(const std::string& name, off_t size) {
  const int fd = ::open(shm_path(name).c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << shm_path(name) << ": " << std::strerror(errno);
  ASSERT_EQ(::ftruncate(fd, size), 0) << std::strerror(errno);
  ::close(fd);
}

constexpr std::uint64_t section_field(std::uint32_t i, std::size_t field_offset) {
  return offsetof(SegmentHeader, sections) + i * sizeof(SectionEntry) + field_offset;
}

// ---- Create and attach -------------------------------------------------------

TEST(SegmentTest, CreateThenAttachRoundTrip) {
  SegmentGuard g(unique_segment("seg"));
  auto created = create(g.name());
  ASSERT_TRUE(created.is_ok()) << created.status().to_string();
  EXPECT_EQ(created->size(), kTotalSize);
  auto seg = Segment::attach(g.name(), kLayout);
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  EXPECT_EQ(seg->name(), g.name());
  EXPECT_EQ(seg->access(), Access::kReadWrite);
  EXPECT_EQ(seg->size(), kTotalSize);

  const SegmentHeader& h = seg->header();
  EXPECT_EQ(h.magic, kSegmentMagic);
  EXPECT_EQ(std::memcmp(&h.magic, "TASKRING", 8), 0);
  EXPECT_EQ(h.header_version, kHeaderVersion);
  EXPECT_EQ(h.layout_version, kLayout);
  EXPECT_EQ(h.total_size, kTotalSize);
  EXPECT_EQ(h.creator_uid, geteuid());
  EXPECT_EQ(h.creator_pid, static_cast<std::uint32_t>(getpid()));
  EXPECT_EQ(h.ready.load(), kReadyValue);
  EXPECT_EQ(h.section_count, 2u);
  EXPECT_EQ(h.header_bytes, kHeaderBytes);

  const SectionEntry* s1 = seg->section(1);
  const SectionEntry* s2 = seg->section(2);
  ASSERT_NE(s1, nullptr);
  ASSERT_NE(s2, nullptr);
  EXPECT_EQ(s1->offset, kSection1Offset);
  EXPECT_EQ(s1->elem_size, 8u);
  EXPECT_EQ(s1->count, 100u);
  EXPECT_EQ(s1->size, 800u);
  EXPECT_EQ(s2->offset, kSection2Offset);
  EXPECT_EQ(s2->elem_size, 1u);
  EXPECT_EQ(s2->count, 5000u);
  EXPECT_EQ(s2->size, 5000u);
  EXPECT_EQ(seg->section(3), nullptr);
  EXPECT_TRUE(seg->section_bytes(3).empty());
  // The section spans sit at the recorded offsets and hold what format wrote.
  EXPECT_EQ(seg->section_bytes(1).data(), seg->base() + kSection1Offset);
  EXPECT_EQ(seg->section_bytes(2).data(), seg->base() + kSection2Offset);
  EXPECT_TRUE(has_pattern(*seg));
}

TEST(SegmentTest, CreateRecordsTheCreationTime) {
  SegmentGuard g(unique_segment("seg"));
  const auto before = static_cast<std::uint64_t>(realtime_ns());
  auto seg = create(g.name());
  const auto after = static_cast<std::uint64_t>(realtime_ns());
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  EXPECT_GE(seg->header().created_unix_ns, before);
  EXPECT_LE(seg->header().created_unix_ns, after);
}

TEST(SegmentTest, MappingsShareMemory) {
  SegmentGuard g(unique_segment("seg"));
  auto a = create(g.name());
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  auto b = Segment::attach(g.name(), kLayout);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  ASSERT_NE(a->base(), b->base());
  b->section_bytes(2)[17] = std::byte{0x5A};
  EXPECT_EQ(a->section_bytes(2)[17], std::byte{0x5A});
}

TEST(SegmentTest, FormatRunsBeforeTheSegmentIsReady) {
  SegmentGuard g(unique_segment("seg"));
  Status inside = Status::ok();
  std::uint32_t ready_inside = 0;
  auto seg = Segment::create(g.name(), two_sections(), [&](Segment& s) {
    ready_inside = s.header().ready.load();
    // Another process attaching now must be told to wait, not given a
    // half-built segment.
    inside = Segment::attach(g.name(), kLayout).status();
    return write_pattern(s);
  });
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  EXPECT_NE(ready_inside, kReadyValue);
  EXPECT_TRUE(is_error(inside, StatusCode::kFailedPrecondition, {g.name(), "not ready"}));
  EXPECT_EQ(seg->header().ready.load(), kReadyValue);
}

TEST(SegmentTest, FailedFormatRemovesTheSegment) {
  SegmentGuard g(unique_segment("seg"));
  auto seg = Segment::create(g.name(), two_sections(),
                             [](Segment&) { return failed_precondition("format says no"); });
  EXPECT_TRUE(is_error(seg.status(), StatusCode::kFailedPrecondition, {"format says no"}));
  EXPECT_FALSE(Segment::exists(g.name()));
}

TEST(SegmentTest, DefaultFileModeIs0600) {
  SegmentGuard g(unique_segment("seg"));
  auto seg = create(g.name());
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  struct stat st {};
  ASSERT_EQ(::stat(shm_path(g.name()).c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), kTotalSize);
}

TEST(SegmentTest, RequestedFileModeIsNotNarrowedByTheUmask) {
  SegmentGuard g(unique_segment("seg"));
  CreateOptions o = two_sections();
  o.mode = 0660;
  const mode_t old = ::umask(077);
  auto seg = create(g.name(), o);
  ::umask(old);
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  struct stat st {};
  ASSERT_EQ(::stat(shm_path(g.name()).c_str(), &st), 0) << std::strerror(errno);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
}

TEST(SegmentTest, CreateRefusesAnExistingName) {
  SegmentGuard g(unique_segment("seg"));
  auto first = create(g.name());
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  CreateOptions o = two_sections();
  o.layout_version = kLayout + 1;
  bool formatted = false;
  auto second = Segment::create(g.name(), o, [&](Segment&) {
    formatted = true;
    return Status::ok();
  });
  EXPECT_TRUE(is_error(second.status(), StatusCode::kAlreadyExists, {g.name(), "already exists"}));
  EXPECT_FALSE(formatted);
  // The existing segment is untouched.
  auto seg = Segment::attach(g.name(), kLayout);
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  EXPECT_TRUE(has_pattern(*seg));
}

TEST(SegmentTest, CreateWithReplaceReplacesAnExistingSegment) {
  SegmentGuard g(unique_segment("seg"));
  auto old = create(g.name());
  ASSERT_TRUE(old.is_ok()) << old.status().to_string();
  CreateOptions o;
  o.layout_version = kLayout + 1;
  o.sections = {{9, 4, 10}};
  o.replace = true;
  auto fresh = Segment::create(g.name(), o, [](Segment&) { return Status::ok(); });
  ASSERT_TRUE(fresh.is_ok()) << fresh.status().to_string();
  auto seg = Segment::attach(g.name(), kLayout + 1);
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  EXPECT_NE(seg->section(9), nullptr);
  EXPECT_EQ(seg->section(1), nullptr);
  EXPECT_EQ(seg->size(), 2 * kSectionAlign);
  EXPECT_FALSE(Segment::attach(g.name(), kLayout).is_ok());
  // The old mapping still sees the old, now unnamed, segment.
  EXPECT_TRUE(has_pattern(*old));
}

TEST(SegmentTest, InvalidNamesAreRejectedNamingTheValue) {
  const std::vector<std::string> bad = {"",          ".hidden",    "has/slash", "has space", "semi;colon",
                                        "dollar$",   "new\nline",  "\xC3\xBC",  std::string(201, 'a')};
  for (const std::string& name : bad) {
    SCOPED_TRACE("name '" + name + "'");
    const std::string quoted = "'" + name + "'";
    EXPECT_TRUE(is_error(validate_segment_name(name), StatusCode::kInvalidArgument, {quoted, "A-Z a-z 0-9"}));
    EXPECT_TRUE(is_error(create(name).status(), StatusCode::kInvalidArgument, {quoted}));
    EXPECT_TRUE(is_error(Segment::attach(name, kLayout).status(), StatusCode::kInvalidArgument, {quoted}));
    EXPECT_TRUE(is_error(Segment::remove(name), StatusCode::kInvalidArgument, {quoted}));
  }
}

TEST(SegmentTest, ValidNamesAreAccepted) {
  EXPECT_TRUE(validate_segment_name("a").is_ok());
  EXPECT_TRUE(validate_segment_name("Queue-1.test_ok").is_ok());
  EXPECT_TRUE(validate_segment_name("x.").is_ok());
  EXPECT_TRUE(validate_segment_name(std::string(200, 'z')).is_ok());
}

TEST(SegmentTest, CreateRejectsBadOptionsAndLeavesNothingBehind) {
  SegmentGuard g(unique_segment("seg"));
  auto with_sections = [](std::vector<SectionSpec> s) {
    CreateOptions o = two_sections();
    o.sections = std::move(s);
    return o;
  };
  CreateOptions bad_mode = two_sections();
  bad_mode.mode = 04755;
  std::vector<SectionSpec> too_many;
  for (std::uint32_t i = 1; i <= kMaxSections + 1; ++i) too_many.push_back({i, 1, 1});
  const std::vector<std::pair<CreateOptions, std::vector<std::string>>> cases = {
      {with_sections({}), {"section count 0", "between 1 and 32"}},
      {with_sections(too_many), {"section count 33"}},
      {with_sections({{0, 8, 1}}), {"section id 0", "non-zero"}},
      {with_sections({{3, 0, 1}}), {"section id 3", "elem_size 0"}},
      {with_sections({{4, 8, 1}, {4, 8, 2}}), {"section id 4", "duplicated"}},
      {with_sections({{5, 1024, std::uint64_t{1} << 31}}), {"section 5", "1 TiB"}},
      {bad_mode, {"mode", "0777"}},
  };
  for (const auto& [opts, parts] : cases) {
    auto seg = Segment::create(g.name(), opts, [](Segment&) { return Status::ok(); });
    ASSERT_FALSE(seg.is_ok());
    EXPECT_EQ(seg.status().code(), StatusCode::kInvalidArgument) << seg.status().to_string();
    for (const std::string& p : parts) {
      EXPECT_NE(seg.status().message().find(p), std::string::npos) << "lacks \"" << p << "\": " << seg.status().to_string();
    }
    EXPECT_FALSE(Segment::exists(g.name()));
  }
}

// ---- Attach refusals ---------------------------------------------------------

class SegmentAttachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto seg = create(guard_.name());
    ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
    // Keep no mapping open: a shrinking file would make it fault.
  }
  const std::string& name() const { return guard_.name(); }
  Status attach(std::uint32_t layout = kLayout, Access access = Access::kReadWrite) const {
    auto seg = Segment::attach(name(), layout, access);
    return seg.is_ok() ? Status::ok() : seg.status();
  }

  SegmentGuard guard_{unique_segment("att")};
};

TEST_F(SegmentAttachTest, IntactSegmentAttaches) { EXPECT_TRUE(attach().is_ok()) << attach().to_string(); }

TEST(SegmentTest, AttachReportsNotFound) {
  const std::string name = unique_segment("missing");
  auto seg = Segment::attach(name, kLayout);
  EXPECT_TRUE(is_error(seg.status(), StatusCode::kNotFound, {"'" + name + "'", "does not exist"}));
}

TEST_F(SegmentAttachTest, RejectsWrongMagic) {
  poke(name(), offsetof(SegmentHeader, magic), std::uint64_t{0x1122334455667788});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "magic 0x1122334455667788", "not a taskring segment"}));
  EXPECT_TRUE(is_error(attach(kLayout, Access::kReadOnly), StatusCode::kDataLoss, {"not a taskring segment"}));
}

TEST_F(SegmentAttachTest, RejectsAnotherHeaderVersion) {
  poke(name(), offsetof(SegmentHeader, header_version), std::uint32_t{kHeaderVersion + 1});
  EXPECT_TRUE(is_error(attach(), StatusCode::kFailedPrecondition,
                       {name(), "header version " + std::to_string(kHeaderVersion + 1),
                        "reads version " + std::to_string(kHeaderVersion)}));
}

TEST_F(SegmentAttachTest, RejectsAnotherLayoutVersion) {
  EXPECT_TRUE(is_error(attach(kLayout + 1), StatusCode::kFailedPrecondition,
                       {name(), "layout version " + std::to_string(kLayout),
                        "reads version " + std::to_string(kLayout + 1)}));
}

TEST_F(SegmentAttachTest, RejectsASegmentThatIsNotReady) {
  poke(name(), offsetof(SegmentHeader, ready), std::uint32_t{0});
  EXPECT_TRUE(is_error(attach(), StatusCode::kFailedPrecondition,
                       {name(), "not ready", "pid " + std::to_string(getpid())}));
  // Any value but kReadyValue is refused, with the name and the hint to remove it.
  poke(name(), offsetof(SegmentHeader, ready), std::uint32_t{kReadyValue + 1});
  EXPECT_TRUE(is_error(attach(), StatusCode::kFailedPrecondition, {name(), "ready", "taskring destroy --segment"}));
}

// A creator that died after sizing the file and before writing the header
// leaves zeros: that is a segment still being built, not a foreign file.
TEST_F(SegmentAttachTest, CallsAZeroFilledHeaderNotReady) {
  const std::vector<std::byte> zeros(kHeaderBytes);
  const int fd = ::open(shm_path(name()).c_str(), O_RDWR);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::pwrite(fd, zeros.data(), zeros.size(), 0), static_cast<ssize_t>(zeros.size()));
  ::close(fd);
  EXPECT_TRUE(is_error(attach(), StatusCode::kFailedPrecondition, {name(), "not ready", "taskring destroy --segment"}));
}

TEST_F(SegmentAttachTest, RejectsATruncatedFile) {
  resize_file(name(), static_cast<off_t>(kTotalSize - kSectionAlign));
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss,
                       {name(), std::to_string(kTotalSize), std::to_string(kTotalSize - kSectionAlign), "truncated"}));
}

TEST_F(SegmentAttachTest, RejectsAFileSmallerThanTheHeader) {
  resize_file(name(), 100);
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "100 bytes", "4096-byte header"}));
  resize_file(name(), 0);
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "0 bytes"}));
}

TEST_F(SegmentAttachTest, RejectsAResizedFile) {
  resize_file(name(), static_cast<off_t>(kTotalSize + kSectionAlign));
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss,
                       {name(), std::to_string(kTotalSize), std::to_string(kTotalSize + kSectionAlign), "resized"}));
}

TEST_F(SegmentAttachTest, RejectsASectionRunningPastTheEnd) {
  poke(name(), section_field(1, offsetof(SectionEntry, size)), std::uint64_t{kTotalSize});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss,
                       {name(), "section 1 (id 2)", "runs past the end", std::to_string(kTotalSize) + " bytes"}));
}

TEST_F(SegmentAttachTest, RejectsASectionWhoseOffsetPlusSizeOverflows) {
  poke(name(), section_field(1, offsetof(SectionEntry, offset)), std::uint64_t{0xFFFFFFFFFFFFF000});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "section 1 (id 2)", "runs past the end"}));
}

TEST_F(SegmentAttachTest, RejectsAMisalignedSection) {
  poke(name(), section_field(1, offsetof(SectionEntry, offset)), std::uint64_t{kSection2Offset + 8});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss,
                       {name(), "section 1 (id 2)", "offset " + std::to_string(kSection2Offset + 8), "misaligned"}));
}

TEST_F(SegmentAttachTest, RejectsOverlappingSections) {
  poke(name(), section_field(1, offsetof(SectionEntry, offset)), std::uint64_t{kSection1Offset});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "section 1 (id 2)", "overlaps"}));
}

TEST_F(SegmentAttachTest, RejectsASectionOverlappingTheHeader) {
  poke(name(), section_field(0, offsetof(SectionEntry, offset)), std::uint64_t{0});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "section 0 (id 1)", "offset 0"}));
}

TEST_F(SegmentAttachTest, RejectsMoreElementsThanTheSectionHolds) {
  poke(name(), section_field(0, offsetof(SectionEntry, count)), std::uint64_t{101});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss,
                       {name(), "section 0 (id 1)", "101 elements of 8 bytes", "800 bytes"}));
}

TEST_F(SegmentAttachTest, RejectsAZeroSectionIdOrElementSize) {
  poke(name(), section_field(0, offsetof(SectionEntry, id)), std::uint32_t{0});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "section 0 (id 0)", "non-zero"}));
  poke(name(), section_field(0, offsetof(SectionEntry, id)), std::uint32_t{1});
  poke(name(), section_field(0, offsetof(SectionEntry, elem_size)), std::uint32_t{0});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "section 0 (id 1)", "non-zero"}));
}

TEST_F(SegmentAttachTest, RejectsDuplicateSectionIds) {
  poke(name(), section_field(1, offsetof(SectionEntry, id)), std::uint32_t{1});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "section 1 (id 1)", "duplicates section 0"}));
}

TEST_F(SegmentAttachTest, RejectsABadSectionCount) {
  poke(name(), offsetof(SegmentHeader, section_count), std::uint32_t{kMaxSections + 1});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "section_count 33"}));
  poke(name(), offsetof(SegmentHeader, section_count), std::uint32_t{0});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "section_count 0"}));
}

TEST_F(SegmentAttachTest, RejectsABadHeaderSize) {
  poke(name(), offsetof(SegmentHeader, header_bytes), std::uint32_t{2048});
  EXPECT_TRUE(is_error(attach(), StatusCode::kDataLoss, {name(), "header_bytes 2048"}));
}

TEST_F(SegmentAttachTest, RejectsAnotherCreatorUidInTheHeader) {
  const std::uint32_t other = geteuid() + 1;
  poke(name(), offsetof(SegmentHeader, creator_uid), other);
  EXPECT_TRUE(is_error(attach(), StatusCode::kPermissionDenied,
                       {name(), "uid " + std::to_string(other), "uid " + std::to_string(geteuid())}));
}

TEST_F(SegmentAttachTest, RejectsAnotherUsersSegment) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown the segment file";
  ASSERT_EQ(::chown(shm_path(name()).c_str(), 65534, 65534), 0) << std::strerror(errno);
  EXPECT_TRUE(is_error(attach(), StatusCode::kPermissionDenied, {name(), "uid 65534", "uid 0"}));
  EXPECT_TRUE(is_error(attach(kLayout, Access::kReadOnly), StatusCode::kPermissionDenied, {"uid 65534"}));
}

TEST_F(SegmentAttachTest, ReadOnlyAttachWorks) {
  auto seg = Segment::attach(name(), kLayout, Access::kReadOnly);
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  EXPECT_EQ(seg->access(), Access::kReadOnly);
  EXPECT_EQ(seg->size(), kTotalSize);
  EXPECT_EQ(seg->header().ready.load(), kReadyValue);
  EXPECT_TRUE(has_pattern(*seg));
}

TEST_F(SegmentAttachTest, ReadOnlyMappingCannotBeWritten) {
  // The default "fast" death-test style forks here, so the child does not
  // re-create a segment that its death would leak.
  auto seg = Segment::attach(name(), kLayout, Access::kReadOnly);
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  std::byte* p = seg->section_bytes(2).data();
  EXPECT_DEATH(*reinterpret_cast<volatile std::uint8_t*>(p) = 1, "");
  // Nothing changed.
  EXPECT_TRUE(has_pattern(*seg));
}

TEST_F(SegmentAttachTest, ReadOnlyAttachValidatesToo) {
  poke(name(), offsetof(SegmentHeader, ready), std::uint32_t{0});
  EXPECT_TRUE(is_error(attach(kLayout, Access::kReadOnly), StatusCode::kFailedPrecondition, {"not ready"}));
}

// ---- Remove ------------------------------------------------------------------

TEST(SegmentTest, RemoveOfAMissingNameIsNotFound) {
  const std::string name = unique_segment("missing");
  EXPECT_FALSE(Segment::exists(name));
  EXPECT_TRUE(is_error(Segment::remove(name), StatusCode::kNotFound, {"'" + name + "'"}));
}

TEST(SegmentTest, RemoveUnlinksTheNameButMappingsSurvive) {
  SegmentGuard g(unique_segment("seg"));
  auto seg = create(g.name());
  ASSERT_TRUE(seg.is_ok()) << seg.status().to_string();
  EXPECT_TRUE(Segment::exists(g.name()));
  EXPECT_TRUE(Segment::remove(g.name()).is_ok());
  EXPECT_FALSE(Segment::exists(g.name()));
  EXPECT_EQ(Segment::attach(g.name(), kLayout).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Segment::remove(g.name()).code(), StatusCode::kNotFound);
  EXPECT_TRUE(has_pattern(*seg));
  // The name is free again.
  auto again = create(g.name());
  EXPECT_TRUE(again.is_ok()) << again.status().to_string();
}

}  // namespace
}  // namespace taskring::ipc
