# Every third-party dependency is found here; scripts/bootstrap.sh installs them.
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)  # Interprocess is header-only
find_package(PkgConfig REQUIRED)

# jemalloc replaces malloc in the tools and benchmarks, never under a
# sanitizer (both want to own the allocator).
add_library(taskring_jemalloc INTERFACE)
if(NOT TASKRING_SANITIZE)
  pkg_check_modules(JEMALLOC REQUIRED IMPORTED_TARGET jemalloc)
  target_link_libraries(taskring_jemalloc INTERFACE PkgConfig::JEMALLOC)
endif()

if(TASKRING_BUILD_TOOLS)
  find_package(CLI11 REQUIRED)
  find_package(nlohmann_json 3 REQUIRED)
endif()
if(TASKRING_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(TASKRING_BUILD_BENCH)
  find_package(benchmark REQUIRED)
  find_package(TBB REQUIRED)
endif()
