"""Runs the compatibility tests and sums them up as ``N passed, N failed``.

Usage: ``python3 tests/compat/run.py [MODULE ...]`` (default: every ``test_*.py`` here). The
summary is printed last, or written to the file named by ``SDK_COMPAT_SUMMARY`` when that is set
(``scripts/sdk-compat`` prints it after its own clean-up). Exit status 0 only when every test
passed.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class CountingResult(unittest.TextTestResult):
    """A test passes when it and all its subtests pass; each failing subtest counts as one
    failure (unittest then reports no success for the test itself)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.n_passed = 0
        self.n_failed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.n_passed += 1

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.n_failed += 1

    def addError(self, test, err):
        super().addError(test, err)
        self.n_failed += 1

    def addSkip(self, test, reason):
        # Nothing here is optional: a skipped check did not pass.
        super().addSkip(test, reason)
        self.n_failed += 1

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.n_failed += 1

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.n_failed += 1


def main(argv):
    sys.path.insert(0, HERE)
    loader = unittest.TestLoader()
    if argv:
        suite = unittest.TestSuite(loader.loadTestsFromName(m) for m in argv)
    else:
        suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=CountingResult)
    result = runner.run(suite)
    summary = "%d passed, %d failed" % (result.n_passed, result.n_failed)
    target = os.environ.get("SDK_COMPAT_SUMMARY")
    if target:
        # The caller prints it last, after its own clean-up.
        with open(target, "w", encoding="utf-8") as f:
            f.write(summary + "\n")
    else:
        print(summary)
    return 0 if result.n_failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
