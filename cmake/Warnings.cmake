# Compiler flags shared by every target: warnings as errors, hardening, sanitizers.
add_library(atr_flags INTERFACE)
target_compile_options(atr_flags INTERFACE
    -Wall -Wextra -Wpedantic -Werror
    -Wshadow -Wcast-align -Wwrite-strings -Wformat=2 -Wstrict-prototypes
    -Wmissing-prototypes -Wconversion -Wno-sign-conversion -Wvla
    -Wundef -Wpointer-arith -Wnull-dereference
    -fstack-protector-strong -fPIE)
target_link_options(atr_flags INTERFACE -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack)

# _FORTIFY_SOURCE needs optimisation and conflicts with ASan's interceptors.
if(NOT CMAKE_BUILD_TYPE STREQUAL "Debug" AND NOT ATR_SANITIZE AND NOT ATR_FUZZ)
    target_compile_definitions(atr_flags INTERFACE _FORTIFY_SOURCE=2)
endif()

if(ATR_SANITIZE)
    string(REPLACE ";" "," _atr_san "${ATR_SANITIZE}")
    target_compile_options(atr_flags INTERFACE
        -fsanitize=${_atr_san} -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(atr_flags INTERFACE -fsanitize=${_atr_san})
    target_compile_definitions(atr_flags INTERFACE ATR_SANITIZED=1)
endif()

# libFuzzer build (tests/fuzz): everything is instrumented for coverage and
# runs under ASan+UBSan; only the fuzz targets link libFuzzer itself
# (-fsanitize=fuzzer, added in tests/fuzz/CMakeLists.txt).
if(ATR_FUZZ)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
        message(FATAL_ERROR "ATR_FUZZ=ON needs clang: configure with CC=clang")
    endif()
    target_compile_options(atr_flags INTERFACE
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
        -fno-omit-frame-pointer)
    target_link_options(atr_flags INTERFACE -fsanitize=address,undefined)
    target_compile_definitions(atr_flags INTERFACE ATR_SANITIZED=1 ATR_FUZZING=1)
endif()
