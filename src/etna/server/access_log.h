// The access log `etna serve` writes: one line per request on stderr with the client, method,
// path, status, tokens (prompt+completion; "-" when the route generates none) and milliseconds.
#pragma once

namespace etna::server {

// On or off for every HttpServer of the process (off unless turned on; `serve` turns it on
// unless --quiet).
void set_access_log(bool on);

// Records the tokens of the request being handled on this thread, for its log line.
void note_tokens(int prompt_tokens, int completion_tokens);

}  // namespace etna::server
