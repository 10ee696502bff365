# Compiler settings shared by every taskring target, through interface targets
# linked PRIVATE: no global flag edits.
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()
set(CMAKE_POSITION_INDEPENDENT_CODE ON)

add_library(taskring_warnings INTERFACE)
target_compile_options(taskring_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
  -Wnon-virtual-dtor -Wold-style-cast -Wcast-align -Wnull-dereference
  -Wimplicit-fallthrough -Werror=return-type)

add_library(taskring_sanitizers INTERFACE)
if(TASKRING_SANITIZE)
  string(REPLACE ";" "," _san "${TASKRING_SANITIZE}")
  target_compile_options(taskring_sanitizers INTERFACE
    -fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(taskring_sanitizers INTERFACE -fsanitize=${_san})
endif()
