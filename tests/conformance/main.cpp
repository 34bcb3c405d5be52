// peft_conformance: checks every golden vector in $PEFT_FIXTURES (default: the repo's copy) — the
// core suite peft/ and the layer-type suite peft-layers/ (ids "peft-layers/...") — and prints
// `PASS <id>`, `FAIL <id>: <reason>` or `SKIP <id>: <reason>`, then `N passed, N failed, N
// skipped`. Exit status 1 on any FAIL.
//
//   peft_conformance [--resave OUT]   OUT/configs/<n>/adapter_config.json: every accepted config
//                                     case as we save it (tests/python/check_resaved.py reads them
//                                     back with Python PEFT)

#include <cstring>
#include <iostream>

#include "peft/error.hpp"
#include "support/conformance.hpp"
#include "support/fixtures.hpp"

int main(int argc, char** argv) {
  using peft_test::Status;
  std::string resave_dir;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--resave") == 0 && i + 1 < argc) {
      resave_dir = argv[++i];
    } else {
      std::cerr << "usage: peft_conformance [--resave OUT]\n";
      return 2;
    }
  }
  std::vector<peft_test::CaseResult> results;
  for (const auto& dir : peft_test::fixture_roots()) {
    try {
      auto suite = peft_test::run_all_cases(dir.string(), resave_dir);
      results.insert(results.end(), suite.begin(), suite.end());
    } catch (const std::exception& e) {
      std::cerr << "peft_conformance: cannot read fixtures in " << dir << ": " << e.what() << '\n';
      return 2;
    }
  }
  std::size_t passed = 0, failed = 0, skipped = 0;
  for (const auto& r : results) {
    switch (r.status) {
      case Status::Pass: ++passed; std::cout << "PASS " << r.id << '\n'; break;
      case Status::Fail: ++failed; std::cout << "FAIL " << r.id << ": " << r.reason << '\n'; break;
      case Status::Skip: ++skipped; std::cout << "SKIP " << r.id << ": " << r.reason << '\n'; break;
    }
  }
  std::cout << passed << " passed, " << failed << " failed, " << skipped << " skipped" << std::endl;
  return failed == 0 && !results.empty() ? 0 : 1;
}
