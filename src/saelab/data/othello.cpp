// Othello game generator (othello.h).
#include "saelab/data/othello.h"

#include <array>

#include "saelab/core/error.h"
#include "saelab/data/token_source.h"

namespace saelab {
namespace {

bool is_centre(int sq) { return sq == 27 || sq == 28 || sq == 35 || sq == 36; }

struct Board {
  std::array<int, 64> cell{};  // 0 empty, 1 black, -1 white
  Board() {
    cell[3 * 8 + 4] = cell[4 * 8 + 3] = 1;
    cell[3 * 8 + 3] = cell[4 * 8 + 4] = -1;
  }
  // Squares flipped by `player` playing `sq` (empty when the move is illegal).
  std::vector<int> flips(int sq, int player) const {
    std::vector<int> out;
    if (cell[size_t(sq)] != 0) return out;
    const int r0 = sq / 8, c0 = sq % 8;
    for (int dr = -1; dr <= 1; ++dr)
      for (int dc = -1; dc <= 1; ++dc) {
        if (dr == 0 && dc == 0) continue;
        std::vector<int> line;
        int r = r0 + dr, c = c0 + dc;
        while (r >= 0 && r < 8 && c >= 0 && c < 8 && cell[size_t(r * 8 + c)] == -player) {
          line.push_back(r * 8 + c);
          r += dr;
          c += dc;
        }
        if (!line.empty() && r >= 0 && r < 8 && c >= 0 && c < 8 &&
            cell[size_t(r * 8 + c)] == player)
          out.insert(out.end(), line.begin(), line.end());
      }
    return out;
  }
  std::vector<int> legal(int player) const {
    std::vector<int> out;
    for (int sq = 0; sq < 64; ++sq)
      if (!flips(sq, player).empty()) out.push_back(sq);
    return out;
  }
};

class OthelloTokenSource : public TokenSource {
 public:
  OthelloTokenSource(int64_t ctx, uint64_t seed) : ctx_(ctx), seed_(seed), rng_(seed) {}
  bool next(std::vector<int64_t>& window) override {
    for (;;) {
      const auto game = generate_othello_game(rng_);
      if (int64_t(game.size()) < ctx_) continue;
      window.resize(size_t(ctx_));
      for (int64_t i = 0; i < ctx_; ++i)
        window[size_t(i)] = othello_square_to_token(game[size_t(i)]);
      return true;
    }
  }
  void restart() override { rng_.seed(seed_); }
  bool infinite() const override { return true; }
  std::string describe() const override {
    return "othello (random legal games, seed " + std::to_string(seed_) + ")";
  }

 private:
  int64_t ctx_;
  uint64_t seed_;
  std::mt19937_64 rng_;
};

}  // namespace

int64_t othello_square_to_token(int square) {
  if (square < 0 || square >= 64 || is_centre(square)) return -1;
  int64_t t = 1;
  for (int s = 0; s < square; ++s)
    if (!is_centre(s)) ++t;
  return t;
}

int othello_token_to_square(int64_t token) {
  if (token < 1 || token > 60) fail("othello token id {}: expected 1..60", token);
  int64_t t = 0;
  for (int s = 0; s < 64; ++s)
    if (!is_centre(s) && ++t == token) return s;
  fail("othello token id {}: no square", token);
}

std::vector<int> generate_othello_game(std::mt19937_64& rng) {
  Board b;
  int player = 1;
  std::vector<int> moves;
  for (;;) {
    auto legal = b.legal(player);
    if (legal.empty()) {
      player = -player;  // implicit pass
      legal = b.legal(player);
      if (legal.empty()) break;  // neither can move
    }
    std::uniform_int_distribution<size_t> pick(0, legal.size() - 1);
    const int sq = legal[pick(rng)];
    for (int f : b.flips(sq, player)) b.cell[size_t(f)] = player;
    b.cell[size_t(sq)] = player;
    moves.push_back(sq);
    player = -player;
  }
  return moves;
}

std::unique_ptr<TokenSource> make_othello_token_source(int64_t context_size, uint64_t seed) {
  if (context_size < 1 || context_size > 60)
    fail("dataset_path = \"othello\": context_size must be in 1..60 (OthelloGPT uses 59), got {}",
         context_size);
  return std::make_unique<OthelloTokenSource>(context_size, seed);
}

}  // namespace saelab
