// The trainer's pieces without a model: LR schedule, progress line, metrics.jsonl, loss SVG.

#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <sstream>

#include "peft/train/loss_svg.hpp"
#include "peft/train/lr_schedule.hpp"
#include "peft/train/metrics.hpp"
#include "peft/train/progress.hpp"

using namespace peft::train;

TEST(LrSchedule, WarmupRisesLinearlyToThePeak) {
  // lr * (step + 1) / warmup for step < warmup.
  EXPECT_DOUBLE_EQ(lr_at(0, 100, 1.0, 4), 0.25);
  EXPECT_DOUBLE_EQ(lr_at(1, 100, 1.0, 4), 0.5);
  EXPECT_DOUBLE_EQ(lr_at(3, 100, 1.0, 4), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(4, 100, 1.0, 4), 1.0);  // first decay step is at the peak
}

TEST(LrSchedule, CosineHalvesAtTheMidpointAndEndsAtTheFloor) {
  // warmup 0, total 11: p = step / 10.
  EXPECT_DOUBLE_EQ(lr_at(0, 11, 2.0, 0, DecayKind::Cosine), 2.0);
  EXPECT_NEAR(lr_at(5, 11, 2.0, 0, DecayKind::Cosine), 1.0, 1e-12);
  EXPECT_NEAR(lr_at(10, 11, 2.0, 0, DecayKind::Cosine), 0.0, 1e-12);
  EXPECT_NEAR(lr_at(10, 11, 2.0, 0, DecayKind::Cosine, 0.1), 0.2, 1e-12);
  // Monotone after warm-up.
  for (int s = 3; s < 50; ++s) EXPECT_LE(lr_at(s + 1, 50, 1.0, 3), lr_at(s, 50, 1.0, 3));
}

TEST(LrSchedule, LinearAndConstantDecay) {
  EXPECT_NEAR(lr_at(2, 6, 1.0, 2, DecayKind::Linear), 1.0, 1e-12);   // p = 0
  EXPECT_NEAR(lr_at(3, 6, 1.0, 2, DecayKind::Linear), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(lr_at(5, 6, 1.0, 2, DecayKind::Linear), 0.0, 1e-12);   // p = 1 on the last step
  EXPECT_DOUBLE_EQ(lr_at(5, 6, 1.0, 2, DecayKind::Constant), 1.0);
  EXPECT_NEAR(lr_at(0, 1, 1.0, 0, DecayKind::Linear), 1.0, 1e-12);  // a single step runs at lr
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(65.4), "1:05");
  EXPECT_EQ(format_duration(3 * 3600 + 62), "3:01:02");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(NAN), "?");
}

TEST(Progress, LineShowsStepBarLossLrTokensPerSecondAndEta) {
  ProgressInfo p;
  p.step = 5;
  p.total = 20;
  p.loss = 2.5;
  p.lr = 1e-3;
  p.tokens_per_s = 1234.4;
  p.eta_s = 75;
  EXPECT_EQ(render_progress("train", p, 8),
            "train  5/20 [##------]  25%  loss 2.5000  lr 1.0e-03  1234 tok/s  ETA 1:15");
  p.eval_loss = 2.25;
  EXPECT_EQ(render_progress("train", p, 0), "train  5/20  25%  loss 2.5000  lr 1.0e-03  1234 tok/s  ETA 1:15  eval 2.2500");
}

TEST(Progress, NonTtyPrintsALineEveryLogEveryStepsAndTheLast) {
  std::ostringstream os;
  {
    ProgressBar bar(os, "train", /*tty=*/false, /*log_every=*/3);
    ProgressInfo p;
    p.total = 7;
    for (int s = 1; s <= 7; ++s) {
      p.step = s;
      bar.update(p);
    }
  }
  const std::string out = os.str();
  EXPECT_EQ(out.find('\r'), std::string::npos);
  std::istringstream lines(out);
  std::vector<std::string> starts;
  for (std::string l; std::getline(lines, l);) starts.push_back(l.substr(0, 9));
  EXPECT_EQ(starts, (std::vector<std::string>{"train 3/7", "train 6/7", "train 7/7"}));
}

TEST(Progress, TtyRedrawsOneLineWithCarriageReturns) {
  std::ostringstream os;
  {
    ProgressBar bar(os, "train", /*tty=*/true, 1);
    ProgressInfo p;
    p.total = 2;
    p.step = 1;
    bar.update(p);
    p.step = 2;
    bar.update(p);  // the last step is always drawn
  }
  const std::string out = os.str();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\r'), 2);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);  // one newline when finished
  EXPECT_EQ(out.back(), '\n');
}

TEST(Metrics, RecordsRoundTripThroughJsonLines) {
  MetricsRecord a;
  a.step = 10;
  a.loss = 3.5;
  a.lr = 0.001;
  a.tokens_per_s = 1500.25;
  a.elapsed_s = 4.5;
  MetricsRecord b = a;
  b.step = 20;
  b.eval_loss = 3.25;
  const std::string text = metrics_jsonl({a, b});
  EXPECT_EQ(text.substr(0, text.find('\n')),
            R"({"step": 10, "loss": 3.5, "lr": 0.001, "tokens_per_s": 1500.25, "elapsed_s": 4.5})");
  const auto back = parse_metrics_jsonl(text);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].step, 10);
  EXPECT_FALSE(back[0].eval_loss.has_value());
  EXPECT_EQ(back[1].step, 20);
  ASSERT_TRUE(back[1].eval_loss.has_value());
  EXPECT_DOUBLE_EQ(*back[1].eval_loss, 3.25);
  EXPECT_DOUBLE_EQ(back[1].tokens_per_s, 1500.25);
}

TEST(Metrics, TornLastLineIsDroppedOtherBadLinesAreErrors) {
  const std::string good = R"({"step": 1, "loss": 1, "lr": 1, "tokens_per_s": 1, "elapsed_s": 1})";
  EXPECT_EQ(parse_metrics_jsonl(good + "\n" + R"({"step": 2, "lo)").size(), 1u);
  EXPECT_THROW(parse_metrics_jsonl(R"({"step": 2, "lo)" "\n" + good + "\n"), peft::SerializationError);
  EXPECT_THROW(parse_metrics_jsonl(R"({"step": 1.5, "loss": 1, "lr": 1, "tokens_per_s": 1, "elapsed_s": 1})" "\n"),
               peft::SerializationError);
}

TEST(LossSvg, NiceTicksAreRoundAndCoverTheRange) {
  EXPECT_EQ(nice_ticks(0, 100), (std::vector<double>{0, 20, 40, 60, 80, 100}));
  EXPECT_EQ(nice_ticks(2.13, 3.9), (std::vector<double>{2.5, 3.0, 3.5}));
  const auto t = nice_ticks(0.0012, 0.0031);
  ASSERT_FALSE(t.empty());
  EXPECT_NEAR(t[1] - t[0], 0.0005, 1e-12);
}

TEST(LossSvg, DrawsTrainAndEvalCurvesWithAxesTicksAndLabels) {
  std::vector<MetricsRecord> rs;
  for (int s = 1; s <= 10; ++s) {
    MetricsRecord r;
    r.step = s * 10;
    r.loss = 4.0 - 0.2 * s;
    if (s % 5 == 0) r.eval_loss = 4.1 - 0.2 * s;
    rs.push_back(r);
  }
  const std::string svg = render_loss_svg(rs, "LoRA <tiny>");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("LoRA &lt;tiny&gt;"), std::string::npos);  // escaped title
  EXPECT_NE(svg.find(">step</text>"), std::string::npos);
  EXPECT_NE(svg.find(">loss (cross entropy"), std::string::npos);
  EXPECT_NE(svg.find(">train loss<"), std::string::npos);
  EXPECT_NE(svg.find(">held-out loss<"), std::string::npos);
  // Ten train points, two eval points (line + dots).
  const std::regex poly("<polyline id=\"(train|eval)\"[^>]*points=\"([^\"]*)\"");
  std::map<std::string, int> counts;
  for (std::sregex_iterator it(svg.begin(), svg.end(), poly), end; it != end; ++it) {
    const std::string pts = (*it)[2];
    counts[(*it)[1]] = static_cast<int>(std::count(pts.begin(), pts.end(), ','));
  }
  EXPECT_EQ(counts["train"], 10);
  EXPECT_EQ(counts["eval"], 2);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '<') - std::count(svg.begin(), svg.end(), '>') , 0);
  // x ticks include 20 and 100; nothing external is referenced.
  EXPECT_NE(svg.find("class=\"xtick\""), std::string::npos);
  EXPECT_NE(svg.find(">100</text>"), std::string::npos);
  EXPECT_EQ(svg.find("href"), std::string::npos);
  EXPECT_EQ(svg.find("<script"), std::string::npos);
}

TEST(LossSvg, EmptyAndSinglePointInputsStillGiveAValidPicture) {
  EXPECT_NE(render_loss_svg({}).find("</svg>"), std::string::npos);
  MetricsRecord r;
  r.step = 1;
  r.loss = 2.0;
  const std::string svg = render_loss_svg({r});
  EXPECT_NE(svg.find("<polyline id=\"train\""), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}
