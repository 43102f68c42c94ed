# The fuzz targets as ordinary ctest tests (label `fuzz`), with any compiler and no libFuzzer:
# each fuzz/fuzz_<target>.cpp linked with fuzz/replay_main.cpp replays fuzz/corpus/<target>/ and
# a fixed set of deterministic mutants of it, as test fuzz_smoke_<target>. Included from
# tests/CMakeLists.txt; the real fuzzing runs through scripts/fuzz.sh.
set(KILN_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})
file(GLOB KILN_FUZZ_SMOKE_SRCS CONFIGURE_DEPENDS ${KILN_FUZZ_DIR}/fuzz_*.cpp)
foreach(src IN LISTS KILN_FUZZ_SMOKE_SRCS)
  get_filename_component(name ${src} NAME_WE)  # fuzz_<target>
  string(REGEX REPLACE "^fuzz_" "" target ${name})
  add_executable(fuzz_smoke_${target} ${src} ${KILN_FUZZ_DIR}/replay_main.cpp)
  target_link_libraries(fuzz_smoke_${target} PRIVATE kiln_io)
  add_test(NAME fuzz_smoke_${target}
           COMMAND fuzz_smoke_${target} --mutations 10000 --seed 1 ${KILN_FUZZ_DIR}/corpus/${target})
  set_tests_properties(fuzz_smoke_${target} PROPERTIES LABELS fuzz TIMEOUT 60)
endforeach()
