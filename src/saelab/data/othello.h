// The synthetic Othello dataset of OthelloGPT: random legal games, black first
// from the standard start (black d5/e4 = [3,4],[4,3], white d4/e5 = [3,3],[4,4]), each move uniform
// over the legal moves; a player without a move passes implicitly (no pass token); the game ends
// when neither can move. Token ids follow TransformerLens/ARENA's othello utils: 0 = pass (unused),
// 1..60 = the squares 0..63 (row-major, square = 8*row + col) in order, skipping the 4 centre
// squares.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace saelab {

class TokenSource;

// Token id (1..60) of a square 0..63; -1 for the centre squares 27, 28, 35, 36.
int64_t othello_square_to_token(int square);
// Square 0..63 of a token id 1..60; throws saelab::Error otherwise.
int othello_token_to_square(int64_t token);

// One random game: the squares played, in order (at most 60).
std::vector<int> generate_othello_game(std::mt19937_64& rng);

// dataset_path = "othello": windows of the first context_size moves (as token ids) of games with at
// least that many moves (shorter games are skipped; context_size ≤ 60, OthelloGPT uses 59).
std::unique_ptr<TokenSource> make_othello_token_source(int64_t context_size, uint64_t seed);

}  // namespace saelab
