// The Othello generator: every game replays legally on an independent board written here (with
// implicit passes, some of which must occur), ends only when neither side can move, and the token
// mapping is TransformerLens's (1..60 = squares 0..63 in order without the 4 centre squares).
#include <gtest/gtest.h>

#include <array>
#include <random>
#include <set>

#include "saelab/core/error.h"
#include "saelab/data/othello.h"
#include "saelab/data/token_source.h"

namespace {

// An independent board: 'B' / 'W' / '.', rows 0..7, columns 0..7.
struct RefBoard {
  char c[8][8];
  RefBoard() {
    for (auto& r : c)
      for (char& x : r) x = '.';
    c[3][4] = c[4][3] = 'B';
    c[3][3] = c[4][4] = 'W';
  }
  int flips_if(int r, int col, char me, bool apply) {
    if (c[r][col] != '.') return 0;
    const char them = me == 'B' ? 'W' : 'B';
    int total = 0;
    const int dirs[8][2] = {{-1, -1}, {-1, 0}, {-1, 1}, {0, -1}, {0, 1}, {1, -1}, {1, 0}, {1, 1}};
    for (auto& d : dirs) {
      int rr = r + d[0], cc = col + d[1], n = 0;
      while (rr >= 0 && rr < 8 && cc >= 0 && cc < 8 && c[rr][cc] == them)
        rr += d[0], cc += d[1], ++n;
      if (n > 0 && rr >= 0 && rr < 8 && cc >= 0 && cc < 8 && c[rr][cc] == me) {
        total += n;
        if (apply)
          for (int k = 1; k <= n; ++k) c[r + k * d[0]][col + k * d[1]] = me;
      }
    }
    if (apply && total > 0) c[r][col] = me;
    return total;
  }
  bool has_move(char me) {
    for (int r = 0; r < 8; ++r)
      for (int col = 0; col < 8; ++col)
        if (flips_if(r, col, me, false) > 0) return true;
    return false;
  }
};

TEST(Othello, EveryGameIsLegalAndSomeHavePasses) {
  std::mt19937_64 rng(7);
  int games_with_pass = 0, full_games = 0;
  const int n_games = 3000;
  for (int g = 0; g < n_games; ++g) {
    const auto moves = saelab::generate_othello_game(rng);
    RefBoard b;
    char me = 'B';
    bool passed = false;
    for (size_t i = 0; i < moves.size(); ++i) {
      if (!b.has_move(me)) {
        me = me == 'B' ? 'W' : 'B';
        passed = true;
        ASSERT_TRUE(b.has_move(me)) << "game " << g << " continued after neither side could move";
      }
      const int sq = moves[i];
      ASSERT_GE(sq, 0);
      ASSERT_LT(sq, 64);
      ASSERT_GT(b.flips_if(sq / 8, sq % 8, me, true), 0)
          << "game " << g << " move " << i << " square " << sq << " is illegal for " << me;
      me = me == 'B' ? 'W' : 'B';
    }
    EXPECT_FALSE(b.has_move('B')) << "game " << g << " ended while black could move";
    EXPECT_FALSE(b.has_move('W')) << "game " << g << " ended while white could move";
    games_with_pass += passed;
    full_games += moves.size() == 60;
  }
  EXPECT_GT(games_with_pass, 0) << "no game with a pass in " << n_games << " games";
  EXPECT_GT(full_games, n_games / 2);
}

TEST(Othello, TokenMappingIsTransformerLens) {
  // TL: stoi_indices = [i for i in range(64) if i not in (27, 28, 35, 36)]; token = index + 1.
  std::vector<int> stoi;
  for (int i = 0; i < 64; ++i)
    if (i != 27 && i != 28 && i != 35 && i != 36) stoi.push_back(i);
  ASSERT_EQ(stoi.size(), 60u);
  for (size_t k = 0; k < stoi.size(); ++k) {
    EXPECT_EQ(saelab::othello_square_to_token(stoi[k]), int64_t(k + 1));
    EXPECT_EQ(saelab::othello_token_to_square(int64_t(k + 1)), stoi[k]);
  }
  for (int c : {27, 28, 35, 36}) EXPECT_EQ(saelab::othello_square_to_token(c), -1);
  EXPECT_THROW(saelab::othello_token_to_square(0), saelab::Error);
  EXPECT_THROW(saelab::othello_token_to_square(61), saelab::Error);
}

TEST(Othello, TokenSourceWindowsAreDeterministic) {
  saelab::TokenSourceOptions o;
  o.dataset_path = "othello";
  o.context_size = 59;
  o.seed = 3;
  auto a = saelab::open_token_source(o), b = saelab::open_token_source(o);
  o.seed = 4;
  auto c = saelab::open_token_source(o);
  std::vector<int64_t> wa, wb, wc;
  bool any_diff = false;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(a->next(wa));
    ASSERT_TRUE(b->next(wb));
    ASSERT_TRUE(c->next(wc));
    ASSERT_EQ(wa.size(), 59u);
    EXPECT_EQ(wa, wb);
    any_diff |= wa != wc;
    std::set<int64_t> distinct(wa.begin(), wa.end());
    EXPECT_EQ(distinct.size(), 59u) << "a square played twice";
    for (int64_t t : wa) {
      EXPECT_GE(t, 1);
      EXPECT_LE(t, 60);
    }
  }
  EXPECT_TRUE(any_diff);
  a->restart();
  std::vector<int64_t> first;
  ASSERT_TRUE(a->next(first));
  ASSERT_TRUE(b->next(wb));  // b is at window 21; a restarted must give window 1 again
  o.context_size = 59;
  o.seed = 3;
  auto d = saelab::open_token_source(o);
  std::vector<int64_t> w1;
  ASSERT_TRUE(d->next(w1));
  EXPECT_EQ(first, w1);
  o.context_size = 61;
  EXPECT_THROW(saelab::open_token_source(o), saelab::Error);
}

}  // namespace
