// Running a sweep (see sweep.h): one activation source broadcast to every member's Trainer.
//
// The Trainers are the ordinary ones, each on its own thread, but the threads take turns: a
// member runs only while it holds the turn, and hands it to the next member each time it asks its
// source for a batch. So the members compute one at a time, in member order, one batch each (no
// oversubscribed cores), and the batch a member gets for its k-th request is the source's k-th
// batch: the first member to ask pulls it from the real source, the others get copies. The stop
// signal the Trainers see is latched when the turn comes back to the first member, so every
// member sees a stop at the same step and checkpoints there.
#include "saelab/train/sweep.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "saelab/core/collectives.h"
#include "saelab/core/error.h"
#include "saelab/core/io.h"
#include "saelab/log/progress.h"
#include "saelab/log/run_error.h"

namespace saelab {

namespace {

// The shared source and the turn-taking between the member threads.
class Broadcast {
 public:
  // rounds: the ranks of a sweep over ranks (null: one process), which agree at every round on
  // the stop signal (so every member everywhere stops after the same step) and at the end on
  // when all are done (see finish).
  Broadcast(std::unique_ptr<ActivationSource> src, size_t n, const std::atomic<int>* real_stop,
            Collectives* rounds = nullptr)
      : src_(std::move(src)),
        real_stop_(real_stop),
        rounds_(rounds),
        cursor_(n, 0),
        active_(n, true),
        last_state_(n, src_->state()) {}

  ActivationSource& source() { return *src_; }
  const std::atomic<int>* latched_stop() const { return &latched_; }
  // Called with the turn held each time a new round starts (the turn wraps to the first member).
  std::function<void()> on_round;

  // Blocks until member i holds the turn (the first member holds it first).
  void acquire(size_t i) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!started_) {
      started_ = true;
      turn_ = first_active();
      latch();
    }
    cv_.wait(lock, [&] { return turn_ == i; });
  }
  // Member i hands the turn on and waits for it to come back.
  void pass_and_wait(size_t i) {
    std::unique_lock<std::mutex> lock(mu_);
    pass_from(i);
    cv_.wait(lock, [&] { return turn_ == i; });
  }
  // Member i is done (finished, stopped or failed): it takes no more turns or batches.
  // Over ranks, the last member here then releases the source (a shared store keeps making this
  // rank's share of the model's work for the others) and keeps taking part in the rounds'
  // agreement, as done, until every rank is: every rank then makes the same number of agreements
  // whether its members ended with the others' or failed early.
  void finish(size_t i) {
    std::unique_lock<std::mutex> lock(mu_);
    active_[i] = false;
    if (turn_ == i) pass_from(i);
    drop_consumed();
    if (rounds_ && first_active() == SIZE_MAX) {
      src_->release();
      while (!agree(true)) {
      }
    }
  }
  // Empty, or why the ranks can no longer agree (a rank died): the members then fail with it.
  std::string broken() const {
    std::unique_lock<std::mutex> lock(mu_);
    return broken_;
  }

  // Member i's next batch (called with the turn held). shared_ok: the caller copies what it keeps,
  // so the batch need not be cloned for it even while other members still need it.
  at::Tensor get(size_t i, int64_t n, bool shared_ok = false) {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t k = cursor_[i];
    if (k == base_ + int64_t(entries_.size())) {
      Entry e;
      e.n = n;
      lock.unlock();  // the model may run here; nobody else holds the turn
      e.x = src_->next_batch(n);
      e.state = src_->state();
      lock.lock();
      entries_.push_back(std::move(e));
    }
    Entry& e = entries_[size_t(k - base_)];
    if (e.n != n)
      fail(
          "sweep: member {} asked the shared source for {} rows where another member took {}; "
          "the members' activation streams diverged",
          i, n, e.n);
    ++cursor_[i];
    last_state_[i] = e.state;
    bool others_need = false;
    for (size_t j = 0; j < cursor_.size(); ++j)
      others_need |= j != i && active_[j] && cursor_[j] <= k;
    // A member may not alter another's batch.
    at::Tensor out = others_need && !shared_ok ? e.x.clone() : e.x;
    drop_consumed();
    return out;
  }
  json state(size_t i) const {
    std::unique_lock<std::mutex> lock(mu_);
    return last_state_[i];
  }
  // Resume: every member's checkpoint must hold the same source position; it is loaded once.
  void load_state(size_t i, const json& s) {
    std::unique_lock<std::mutex> lock(mu_);
    if (loaded_ && s != loaded_state_)
      fail(
          "sweep: member {}'s checkpoint is at source position {} but another member's is at {}; "
          "the members cannot share one activation stream from there",
          i, s.dump(), loaded_state_.dump());
    if (!loaded_) {
      if (!entries_.empty() || base_ != 0) fail("sweep: cannot resume a source already read from");
      src_->load_state(s);
      loaded_ = true;
      loaded_state_ = s;
    }
    last_state_[i] = s;
  }

 private:
  struct Entry {
    int64_t n = 0;
    at::Tensor x;
    json state;
  };
  size_t first_active() const {
    for (size_t j = 0; j < active_.size(); ++j)
      if (active_[j]) return j;
    return SIZE_MAX;
  }
  void latch() {
    if (rounds_)
      agree(false);
    else
      latched_.store(real_stop_ ? real_stop_->load() : 0);
    if (on_round) on_round();
  }
  // With mu_ held: one agreement of the ranks. Every rank's latched stop becomes the largest stop
  // signal of any rank; returns whether every rank is done. Collectives hold only maxima here as
  // the minima of negatives.
  bool agree(bool done) {
    const int here = real_stop_ ? real_stop_->load() : 0;
    if (!broken_.empty()) {
      latched_.store(here);
      return true;
    }
    at::Tensor t = at::empty({2}, at::kLong);
    t[0] = -int64_t(here);
    t[1] = done ? 0 : -1;
    try {
      rounds_->min_(t);
    } catch (const std::exception& e) {
      broken_ = fmt::format("the ranks of the sweep stopped agreeing (a rank died?): {}", e.what());
      return true;
    }
    latched_.store(int(-t[0].item<int64_t>()));
    return t[1].item<int64_t>() == 0;
  }
  // With mu_ held: the turn goes to the next active member after i; a wrap starts a new round.
  void pass_from(size_t i) {
    const size_t n = active_.size();
    size_t next = SIZE_MAX;
    for (size_t step = 1; step <= n; ++step) {
      size_t j = (i + step) % n;
      if (active_[j]) {
        next = j;
        break;
      }
    }
    turn_ = next;
    if (next != SIZE_MAX && next <= i) latch();
    cv_.notify_all();
  }
  void drop_consumed() {
    int64_t low = INT64_MAX;
    for (size_t j = 0; j < cursor_.size(); ++j)
      if (active_[j]) low = std::min(low, cursor_[j]);
    if (low == INT64_MAX) low = base_ + int64_t(entries_.size());
    while (base_ < low && !entries_.empty()) entries_.pop_front(), ++base_;
  }

  std::unique_ptr<ActivationSource> src_;
  const std::atomic<int>* real_stop_;
  Collectives* rounds_;
  std::string broken_;
  std::atomic<int> latched_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  size_t turn_ = 0;
  std::vector<int64_t> cursor_;  // the index of each member's next batch
  std::vector<bool> active_;
  std::vector<json> last_state_;  // the source position after each member's last batch
  std::deque<Entry> entries_;     // batches not yet taken by every active member
  int64_t base_ = 0;              // the index of entries_.front()
  bool loaded_ = false;
  json loaded_state_;
};

// What one member's Trainer sees as its activation source: the shared batches, or in a sweep over
// hook_name the member's block of d_in columns of them (block -1: whole rows).
class MemberSource : public ActivationSource {
 public:
  MemberSource(Broadcast& b, size_t i, int64_t block) : b_(b), i_(i), block_(block) {}
  int64_t d_in() const override { return b_.source().d_in(); }
  int64_t d_out() const override { return b_.source().d_out(); }
  at::Tensor next_batch(int64_t n) override {
    b_.pass_and_wait(i_);
    if (const std::string why = b_.broken(); !why.empty()) throw Error(why);
    // A block is copied out below, so the shared batch need not be cloned first.
    at::Tensor x = b_.get(i_, n, /*shared_ok=*/block_ >= 0);
    if (block_ < 0) return x;
    const int64_t d = b_.source().d_in();
    return x.narrow(1, block_ * d, d).contiguous();
  }
  json state() const override { return b_.state(i_); }
  void load_state(const json& s) override { b_.load_state(i_, s); }
  std::optional<at::Tensor> true_features() const override { return b_.source().true_features(); }
  std::string describe() const override { return b_.source().describe(); }

 private:
  Broadcast& b_;
  size_t i_;
  int64_t block_;
};

// The sweep's one progress line: tokens of the slowest member, the sweep's token rate, ETA.
class SweepProgress {
 public:
  SweepProgress(int64_t total, size_t n_members, bool quiet, int64_t start)
      : total_(total),
        n_(n_members),
        start_(start),
        out_(quiet ? stderr : stdout),
        tty_(isatty(fileno(out_))),
        t0_(std::chrono::steady_clock::now()),
        last_(t0_) {}
  void update(int64_t tokens, bool final = false) {
    auto now = std::chrono::steady_clock::now();
    double since = std::chrono::duration<double>(now - last_).count();
    if (!final && since < (tty_ ? 0.1 : 10.0)) return;
    double elapsed = std::chrono::duration<double>(now - t0_).count();
    double rate = elapsed > 0 ? double(tokens - start_) / elapsed : 0.0;
    double eta = rate > 0 ? double(total_ - tokens) / rate : NAN;
    std::string bar;
    if (tty_) {
      int filled =
          total_ > 0 ? int(24.0 * std::clamp(double(tokens) / double(total_), 0.0, 1.0)) : 0;
      bar = "[" + std::string(size_t(filled), '#') + std::string(size_t(24 - filled), '.') + "] ";
    }
    std::string line = fmt::format("{}{}/{} tok  {} tok/s  ETA {}  sweep of {} SAEs", bar,
                                   format_count(double(tokens)), format_count(double(total_)),
                                   format_count(rate), format_duration(eta), n_);
    if (tty_)
      std::fprintf(out_, "\r%s\x1b[K%s", line.c_str(), final ? "\n" : "");
    else
      std::fprintf(out_, "%s\n", line.c_str());
    std::fflush(out_);
    last_ = now;
  }

 private:
  int64_t total_;
  size_t n_;
  int64_t start_;
  std::FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point t0_, last_;
};

json member_entry(const SweepMember& m) {
  return json{{"name", m.name}, {"run_dir", m.name}, {"values", m.values}};
}

}  // namespace

json SweepResult::to_json(const SweepSpec& spec) const {
  json members = json::array();
  for (size_t i = 0; i < spec.members.size(); ++i) {
    json e = member_entry(spec.members[i]);
    if (i < this->members.size()) {
      const TrainSummary& s = this->members[i];
      e["status"] = !errors[i].empty() ? "failed" : s.completed ? "completed" : "stopped";
      if (!errors[i].empty()) e["error"] = errors[i];
      json sum = s.to_json();
      sum.erase("run_dir");
      e["summary"] = sum;
    }
    members.push_back(e);
  }
  return json{{"saelab_sweep_version", 1},
              {"sweep_name", spec.sweep_name},
              {"keys", spec.keys},
              {"values", spec.values},
              {"n_members", spec.members.size()},
              {"completed", completed},
              {"stop_signal", stop_signal},
              {"seconds", seconds},
              {"members", members}};
}

SweepResult run_sweep(const SweepSpec& spec, std::unique_ptr<ActivationSource> source,
                      SweepOptions opts) {
  const size_t n = spec.members.size();
  if (n == 0) fail("sweep: no members");
  auto t0 = std::chrono::steady_clock::now();
  make_dirs(opts.run_dir);
  if (opts.write_index) {
    json start = SweepResult{}.to_json(spec);
    start["source"] = source->describe();
    for (auto& m : start["members"]) m["status"] = "running";
    write_file_atomic(opts.run_dir + "/sweep.json", start.dump(2) + "\n");
  }
  Broadcast b(std::move(source), n, opts.stop_signal, opts.rounds);
  std::vector<std::unique_ptr<Trainer>> trainers;
  for (size_t i = 0; i < n; ++i) {
    TrainerOptions to;
    to.run_dir = opts.run_dir + "/" + spec.members[i].name;
    to.stop_signal = b.latched_stop();
    to.quiet = opts.quiet;
    to.progress = false;
    to.summary_eval_batches = opts.summary_eval_batches;
    if (opts.member_options) opts.member_options(spec.members[i].cfg, to);
    int64_t block = -1;
    if (opts.hook_blocks.size() > 1) {
      const auto& h = opts.hook_blocks;
      const auto at = std::find(h.begin(), h.end(), spec.members[i].cfg.hook_name);
      if (at == h.end())
        fail("sweep: internal: member {}'s hook {} is not among the source's hooks",
             spec.members[i].name, spec.members[i].cfg.hook_name);
      block = at - h.begin();
    }
    trainers.push_back(std::make_unique<Trainer>(spec.members[i].cfg,
                                                 std::make_unique<MemberSource>(b, i, block), to));
  }
  int64_t start_tokens = 0;
  if (!opts.resume_checkpoints.empty()) {
    for (size_t i = 0; i < n; ++i)
      if (!opts.resume_checkpoints[i].empty()) trainers[i]->resume_from(opts.resume_checkpoints[i]);
    start_tokens = trainers[0]->step() * spec.members[0].cfg.train_batch_size_tokens;
  }
  const RunnerConfig& c0 = spec.members[0].cfg;
  std::unique_ptr<SweepProgress> progress;
  if (opts.progress)
    progress = std::make_unique<SweepProgress>(c0.steps() * c0.train_batch_size_tokens, n,
                                               opts.quiet, start_tokens);
  // With the turn held, the other members are parked: reading their step is safe.
  b.on_round = [&] {
    if (!progress) return;
    int64_t steps = INT64_MAX;
    for (const auto& t : trainers) steps = std::min(steps, t->step());
    progress->update(steps * c0.train_batch_size_tokens);
  };

  SweepResult r;
  r.run_dir = opts.run_dir;
  r.members.resize(n);
  r.errors.resize(n);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      b.acquire(i);
      try {
        r.members[i] = trainers[i]->run();
      } catch (const std::exception& e) {
        r.errors[i] = e.what();
        r.members[i].run_dir = opts.run_dir + "/" + spec.members[i].name;
        r.members[i].architecture = spec.members[i].cfg.architecture;
        r.members[i].steps = trainers[i]->step();
        write_run_error(r.members[i].run_dir, r.errors[i]);
      }
      b.finish(i);
    });
  for (auto& t : threads) t.join();
  if (progress) {
    int64_t steps = INT64_MAX;
    for (const auto& t : trainers) steps = std::min(steps, t->step());
    progress->update(steps * c0.train_batch_size_tokens, /*final=*/true);
  }

  r.completed = true;
  for (size_t i = 0; i < n; ++i) {
    r.completed &= r.members[i].completed && r.errors[i].empty();
    if (r.members[i].stop_signal) r.stop_signal = r.members[i].stop_signal;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (opts.write_index) {
    json end = r.to_json(spec);
    end["source"] = b.source().describe();
    write_file_atomic(opts.run_dir + "/sweep.json", end.dump(2) + "\n");
  }
  return r;
}

SweepResult run_sweep_over_ranks(const SweepSpec& spec, std::unique_ptr<ActivationSource> source,
                                 SweepOptions opts, Collectives& ranks) {
  const int W = ranks.world_size(), me = ranks.rank();
  const size_t n = spec.members.size();
  if (n < static_cast<size_t>(W))
    fail(
        "a sweep of {} members over {} ranks: each rank trains whole members, so run at most {} "
        "ranks",
        n, W, n);
  const std::string describe = source->describe();
  if (me == 0) {
    make_dirs(opts.run_dir);
    json start = SweepResult{}.to_json(spec);
    start["source"] = describe;
    for (auto& m : start["members"]) m["status"] = "running";
    write_file_atomic(opts.run_dir + "/sweep.json", start.dump(2) + "\n");
  }
  ranks.barrier();
  // This rank's members, and where each resumes.
  SweepSpec mine = spec;
  mine.members.clear();
  std::vector<std::string> resume;
  for (size_t i = me; i < n; i += W) {
    mine.members.push_back(spec.members[i]);
    if (!opts.resume_checkpoints.empty()) resume.push_back(opts.resume_checkpoints[i]);
  }
  SweepOptions o = opts;
  o.resume_checkpoints = resume;
  o.write_index = false;
  o.rounds = &ranks;
  const SweepResult local = run_sweep(mine, std::move(source), o);

  // Every rank's results, in member order: rank r's k-th member is member r + k·W.
  json blob = {{"summaries", json::array()}, {"errors", local.errors}};
  for (const auto& s : local.members) blob["summaries"].push_back(s.to_json());
  SweepResult all;
  all.run_dir = opts.run_dir;
  all.members.resize(n);
  all.errors.resize(n);
  all.seconds = local.seconds;
  for (int r = 0; r < W; ++r) {
    const json got = json::parse(ranks.broadcast_string(r == me ? blob.dump() : "", r));
    for (size_t k = 0; k < got["summaries"].size(); ++k) {
      const size_t i = r + k * W;
      all.members[i] = TrainSummary::from_json(got["summaries"][k]);
      all.errors[i] = got["errors"][k].get<std::string>();
    }
  }
  all.completed = true;
  for (size_t i = 0; i < n; ++i) {
    all.completed &= all.members[i].completed && all.errors[i].empty();
    if (all.members[i].stop_signal) all.stop_signal = all.members[i].stop_signal;
  }
  if (me == 0) {
    json end = all.to_json(spec);
    end["source"] = describe;
    end["world_size"] = W;
    write_file_atomic(opts.run_dir + "/sweep.json", end.dump(2) + "\n");
  }
  ranks.barrier();
  return all;
}

std::vector<std::string> sweep_resume_checkpoints(const SweepSpec& spec, const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::set<int64_t>> have;
  bool any = false;
  for (const auto& m : spec.members) {
    std::set<int64_t> tokens;
    std::string ck = dir + "/" + m.name + "/checkpoints";
    if (fs::is_directory(ck))
      for (const auto& e : fs::directory_iterator(ck)) {
        const std::string name = e.path().filename().string();
        if (!e.is_directory() || name.empty() ||
            name.find_first_not_of("0123456789") != std::string::npos)
          continue;
        if (!path_exists(e.path().string() + "/trainer_state.json")) continue;
        tokens.insert(std::stoll(name));
      }
    any |= !tokens.empty();
    have.push_back(tokens);
  }
  std::vector<std::string> out(spec.members.size());
  if (!any) return out;
  int64_t best = -1;
  for (int64_t t : have[0]) {
    bool all = true;
    for (const auto& h : have) all &= h.count(t) > 0;
    if (all) best = std::max(best, t);
  }
  if (best < 0) {
    std::string which;
    for (size_t i = 0; i < have.size(); ++i)
      which +=
          fmt::format("{}{}: {}", i ? "; " : "", spec.members[i].name,
                      have[i].empty() ? std::string("none") : std::to_string(*have[i].rbegin()));
    fail(
        "{}: the members have no checkpoint at a common token count ({}); a sweep resumes only "
        "from a point every member reached (SIGINT / SIGTERM checkpoints all of them)",
        dir, which);
  }
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = dir + "/" + spec.members[i].name + "/checkpoints/" + std::to_string(best);
  return out;
}

}  // namespace saelab
