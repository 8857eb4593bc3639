// Errors thrown by the core. Every failure the addon can report is a GptError
// with a code from docs/ARCHITECTURE.md's list; the addon turns it into a JS Error whose
// `code` property carries the same string. Nothing in the core aborts.
#pragma once
#include <stdexcept>
#include <string>

namespace gpt {

enum class ErrorCode { InvalidArgument, BadFile, OutOfMemory, NoGpu, NonFinite, Disposed, Aborted, Internal };

inline const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::InvalidArgument: return "INVALID_ARGUMENT";
    case ErrorCode::BadFile: return "BAD_FILE";
    case ErrorCode::OutOfMemory: return "OUT_OF_MEMORY";
    case ErrorCode::NoGpu: return "NO_GPU";
    case ErrorCode::NonFinite: return "NONFINITE";
    case ErrorCode::Disposed: return "DISPOSED";
    case ErrorCode::Aborted: return "ABORTED";
    case ErrorCode::Internal: return "INTERNAL";
  }
  return "INTERNAL";
}

class GptError : public std::runtime_error {
 public:
  GptError(ErrorCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  ErrorCode code() const { return code_; }
  const char* code_name() const { return error_code_name(code_); }

 private:
  ErrorCode code_;
};

// Checks a precondition that TypeScript validation should already guarantee;
// native code still checks sizes before touching memory.
#define GPT_CHECK_ARG(cond, msg)                                              \
  do {                                                                        \
    if (!(cond)) throw ::gpt::GptError(::gpt::ErrorCode::InvalidArgument, (msg)); \
  } while (0)

}  // namespace gpt
