#!/usr/bin/env bash
# Builds and tests the plain-JVM core of the Android demo (lmcore/) with javac and JUnit 4 from
# Debian: no Gradle, no Android SDK. The app module itself needs Android Studio (see README.md).
#
#   bash android_demo/ci_check.sh                  compile, run the JUnit tests, print
#                                                  "lmcore: N passed, M failed" last
#   bash android_demo/ci_check.sh --build-only     compile the main classes only (no JUnit needed)
#   ... --build_dir=DIR                            where classes go (default:
#                                                  android_demo/build/lmcore; a relative DIR is
#                                                  from the current folder)
#
# The main classes end up in BUILD_DIR/classes, e.g. for the contract CLI:
#   java -cp android_demo/build/lmcore/classes org.tflmcompress.lmcore.ContractCli \
#       --bundle_dir=runs/ptb_small/tflite_int8 --text="the stock market"
set -euo pipefail
caller_dir=$PWD
cd "$(dirname "$0")"

build_only=0
build_dir="build/lmcore"
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=1 ;;
    --build_dir=*)
      build_dir="${arg#--build_dir=}"
      [[ $build_dir == /* ]] || build_dir="$caller_dir/$build_dir"
      ;;
    *) echo "error: unknown argument '$arg'; use [--build-only] [--build_dir=DIR]" >&2; exit 1 ;;
  esac
done

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $1 is missing and there is no apt-get to install it; install $2" >&2
    exit 1
  fi
  if [[ $apt_updated == 0 ]]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

command -v javac >/dev/null 2>&1 || apt_install javac default-jdk-headless

# Release 8: the core must only use the Java API that Android (minSdk 26) has; javac checks it.
javac_flags=(--release 8 -encoding UTF-8 -Xlint:all -Xlint:-options)
main_sources=$(find lmcore/src/main/java -name '*.java' | sort)

rm -rf "$build_dir/classes"
mkdir -p "$build_dir/classes"
# shellcheck disable=SC2086  # file names have no spaces
javac "${javac_flags[@]}" -d "$build_dir/classes" $main_sources
if [[ $build_only == 1 ]]; then
  echo "lmcore: built $build_dir/classes"
  exit 0
fi

junit_jar=/usr/share/java/junit4.jar
[[ -f $junit_jar ]] || apt_install "$junit_jar" junit4
classpath="$build_dir/classes:$build_dir/test-classes:$junit_jar"
for jar in /usr/share/java/hamcrest-core.jar /usr/share/java/hamcrest.jar; do
  [[ -f $jar ]] && classpath="$classpath:$jar"
done

rm -rf "$build_dir/test-classes"
mkdir -p "$build_dir/test-classes"
test_sources=$(find lmcore/src/test/java -name '*.java' | sort)
# shellcheck disable=SC2086
javac "${javac_flags[@]}" -cp "$classpath" -d "$build_dir/test-classes" $test_sources
test_classes=$(cd lmcore/src/test/java && find . -name '*Test.java' | sort \
  | sed -e 's|^\./||' -e 's|\.java$||' -e 's|/|.|g')

log="$build_dir/junit.log"
set +e
# shellcheck disable=SC2086
java -cp "$classpath" org.junit.runner.JUnitCore $test_classes > "$log" 2>&1
status=$?
set -e
# JUnitCore ends with "OK (N tests)" or "Tests run: N,  Failures: M".
total=$(sed -n -e 's/^OK (\([0-9]*\) tests*)$/\1/p' -e 's/^Tests run: \([0-9]*\), .*$/\1/p' "$log" \
  | tail -1)
failed=$(sed -n 's/^Tests run: [0-9]*,  *Failures: \([0-9]*\).*$/\1/p' "$log" | tail -1)
failed=${failed:-0}
if [[ $status != 0 ]]; then
  cat "$log"
  [[ -n $total ]] || { echo "lmcore: 0 passed, 1 failed"; exit 1; }
  [[ $failed != 0 ]] || failed=1
else
  tail -n 3 "$log"
fi
echo "lmcore: $((total - failed)) passed, $failed failed"
[[ $status == 0 ]]
