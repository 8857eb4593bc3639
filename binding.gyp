# CPU-only build of the same native sources with node-gyp, for machines
# without CMake (`npm run build:gyp`). CMakeLists.txt is the main build.
# scripts/gyp-sources.js reads the source lists and the per-path flags from
# native/sources.cmake (shared with the CMake builds) and generates the
# per-path kernel files into build/isa-src. gyp has no per-file flags, so each
# instruction-set path is its own static library with its own flags.
{
  "target_defaults": {
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fno-math-errno"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "CLANG_CXX_LANGUAGE_STANDARD": "c++17" },
    "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] } }
  },
  "targets": [
    {
      "target_name": "gpt_cpu_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/gyp-sources.js isa avx512)"],
      "defines": ["GPT_ISA_NS=avx512"],
      "conditions": [["target_arch=='x64'", { "cflags_cc": ["<!@(node scripts/gyp-sources.js flags avx512)"] }]]
    },
    {
      "target_name": "gpt_cpu_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/gyp-sources.js isa avx2)"],
      "defines": ["GPT_ISA_NS=avx2"],
      "conditions": [["target_arch=='x64'", { "cflags_cc": ["<!@(node scripts/gyp-sources.js flags avx2)"] }]]
    },
    {
      "target_name": "gpt_cpu_portable",
      "type": "static_library",
      "sources": ["<!@(node scripts/gyp-sources.js isa portable)"],
      "defines": ["GPT_ISA_NS=portable"],
      "cflags_cc": ["<!@(node scripts/gyp-sources.js flags portable)"]
    },
    {
      "target_name": "gpt_engine",
      "sources": ["<!@(node scripts/gyp-sources.js main)"],
      "dependencies": ["gpt_cpu_avx512", "gpt_cpu_avx2", "gpt_cpu_portable"],
      "libraries": ["-lpthread", "-ldl"]
    }
  ]
}
