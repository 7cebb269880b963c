// Prompt-lookup decoding's drafter: guesses the next tokens by finding the sequence's last
// n-gram earlier in the sequence (the prompt and the text generated so far) and proposing the
// tokens that followed it there. The model then checks all guesses in one batched forward pass
// (Generator::set_lookup), so the output is exactly what plain decoding gives, only faster
// when the text repeats itself (summaries, code edits, quoting the prompt).
#pragma once
#include <span>
#include <vector>

#include "etna/tokenizer/vocab.h"

namespace etna::engine {

using tokenizer::Token;

// Up to `n_draft` tokens that followed the most recent earlier occurrence of the last n tokens
// of `history`, trying n = max_ngram, ..., 1 and taking the first n that matches. Empty when
// nothing matches, n_draft <= 0 or history is shorter than 2 tokens. `matched` (optional)
// receives the n that matched (0 when none): longer matches make better guesses.
std::vector<Token> lookup_draft(std::span<const Token> history, int n_draft, int max_ngram = 3, int* matched = nullptr);

}  // namespace etna::engine
