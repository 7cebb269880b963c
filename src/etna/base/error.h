// The one error type of Etna. Every failure a user can see is an etna::Error whose message
// says what went wrong and, where possible, what to do about it. The kind lets the server map
// an error to an HTTP status without parsing messages.
#pragma once
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace etna {

enum class ErrorKind {
  invalid_argument,  // the caller asked for something malformed (HTTP 400)
  not_found,         // a named thing does not exist (HTTP 404)
  corrupt,           // a file's contents are invalid or truncated
  io,                // the operating system refused (open, read, write, mmap)
  unsupported,       // valid, but not something Etna can do (yet)
  limit,             // a size or count limit was exceeded (HTTP 413 / 400)
  conflict,          // already exists, or state does not allow it (HTTP 409)
  unavailable,       // busy, overloaded or shutting down (HTTP 503 / 429)
  internal,          // a bug: an invariant did not hold
};

// Messages often quote what the user sent (a name, a path, a header). what() is a C string, so a
// NUL byte inside would cut the message there, and control bytes would reach a terminal or a log
// as they are. The constructor therefore writes NUL and the C0 control bytes other than newline
// and tab as \xNN, so the whole message survives what() and prints safely.
inline std::string printable_message(const std::string& message) {
  std::string out;
  out.reserve(message.size());
  for (const char ch : message) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(printable_message(message)), kind_(kind) {}
  explicit Error(const std::string& message) : Error(ErrorKind::invalid_argument, message) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Throws etna::Error(kind, fmt::format(...)).
template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(kind, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace etna
