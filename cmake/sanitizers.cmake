# Sanitizer and libFuzzer instrumentation for every target (scripts/sanitize.sh).
#   -DCRAWLGATE_SANITIZE=address,undefined   ASan + UBSan (UB aborts: no recovery)
#   -DCRAWLGATE_SANITIZE=thread              TSan
#   -DCRAWLGATE_SANITIZE=                    none (default)
#   -DCRAWLGATE_FUZZ=ON                      also instrument everything for libFuzzer coverage
#                                            (-fsanitize=fuzzer-no-link) and build fuzz/
# Use clang-14 (+ libclang-rt-14-dev): GCC 12's TSan reports a false race inside libstdc++'s
# std::atomic<std::shared_ptr>, and GCC has no libFuzzer (docs: /work/shared/stack-notes.md).
# Set these in a separate build tree, never in the Release tree: ASan's quarantine holds freed
# memory, so RSS assertions are only compiled in Release (tests/app/CMakeLists.txt).
set(CRAWLGATE_SANITIZE "" CACHE STRING
    "Sanitizers for all targets: address,undefined | thread | empty")
set_property(CACHE CRAWLGATE_SANITIZE PROPERTY STRINGS "" "address,undefined" "thread")

set(_crawlgate_san_flags "")
if(CRAWLGATE_SANITIZE)
  if(CRAWLGATE_SANITIZE MATCHES "thread" AND CRAWLGATE_SANITIZE MATCHES "address")
    message(FATAL_ERROR "CRAWLGATE_SANITIZE: thread cannot be combined with address")
  endif()
  if(NOT CRAWLGATE_SANITIZE MATCHES "^(address|undefined|thread)(,(address|undefined|thread))*$")
    message(FATAL_ERROR "CRAWLGATE_SANITIZE='${CRAWLGATE_SANITIZE}': expected "
                        "'address,undefined', 'thread' or empty")
  endif()
  if(CRAWLGATE_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    message(WARNING "GCC TSan reports a false race in std::atomic<std::shared_ptr>; "
                    "configure with CXX=clang++-14")
  endif()
  list(APPEND _crawlgate_san_flags -fsanitize=${CRAWLGATE_SANITIZE} -fno-omit-frame-pointer)
  if(CRAWLGATE_SANITIZE MATCHES "undefined")
    list(APPEND _crawlgate_san_flags -fno-sanitize-recover=undefined)
  endif()
  add_compile_options(${_crawlgate_san_flags})
  add_link_options(${_crawlgate_san_flags})
  message(STATUS "crawlgate: sanitizers ${CRAWLGATE_SANITIZE}")
endif()

if(CRAWLGATE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CRAWLGATE_FUZZ needs clang (libFuzzer): CXX=clang++-14")
  endif()
  if(CRAWLGATE_SANITIZE MATCHES "thread")
    message(FATAL_ERROR "CRAWLGATE_FUZZ goes with CRAWLGATE_SANITIZE=address,undefined")
  endif()
  # Coverage instrumentation for the libraries the fuzz targets link; only the fuzz executables
  # link libFuzzer itself (-fsanitize=fuzzer, fuzz/CMakeLists.txt). The sanitizer runtime gives the
  # other executables (tests) weak no-op coverage callbacks.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
