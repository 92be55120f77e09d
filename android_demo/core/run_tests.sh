#!/usr/bin/env bash
# Compiles the plain-Java core module and runs its JUnit 4 tests with the machine's JDK (no Gradle).
#
#   android_demo/core/run_tests.sh [TestClass ...]      (default: every *Test class)
#
# Environment:
#   JUNIT_JAR     JUnit 4 jar (default: /usr/share/java/junit4.jar, from Debian's junit4 package)
#   HAMCREST_JAR  Hamcrest core jar (default: /usr/share/java/hamcrest-core.jar if present)
#   BUILD_DIR     where classes go (default: android_demo/core/build/javac)
#   GOLDEN_DIR    golden folder for GoldenTest (default: src/test/resources/golden on the classpath)
#   SCHEMA_PATH   the model description schema for DescriptionSchemaTest
#                 (default: ksac_runtime/model_description.schema.json of this repository)
# Exit status: 0 all passed, 1 a test failed, 2 compile error, 3 javac/java/JUnit missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
junit="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
hamcrest="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
build="${BUILD_DIR:-$here/build/javac}"

for tool in javac java; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool not found; install a JDK (8 or newer)" >&2; exit 3; }
done
[ -f "$junit" ] || { echo "SKIP: JUnit jar not found at $junit; apt-get install junit4 or set JUNIT_JAR" >&2; exit 3; }
cp="$junit"
[ -f "$hamcrest" ] && cp="$cp:$hamcrest"

rm -rf "$build/main" "$build/test"
mkdir -p "$build/main" "$build/test"
# --release 8: the core must stay within the Java 8 API that Android (minSdk 24) offers.
release=(--release 8 -Xlint:all -Xlint:-options -Werror)
find "$here/src/main/java" -name '*.java' > "$build/main-sources.txt"
find "$here/src/test/java" -name '*.java' > "$build/test-sources.txt"
javac "${release[@]}" -encoding UTF-8 -d "$build/main" @"$build/main-sources.txt" || exit 2
javac "${release[@]}" -encoding UTF-8 -cp "$build/main:$cp" -d "$build/test" @"$build/test-sources.txt" || exit 2

if [ "$#" -gt 0 ]; then
    classes=()
    for c in "$@"; do classes+=("dev.ksaczoo.core.${c##*.}"); done
else
    mapfile -t classes < <(cd "$here/src/test/java" && find . -name '*Test.java' | sed 's|^\./||; s|\.java$||; s|/|.|g' | sort)
fi
# The one schema that Python, Java and JavaScript check descriptions against, two levels above this folder.
schema="${SCHEMA_PATH:-$(cd "$here/../.." && pwd)/ksac_runtime/model_description.schema.json}"
props=("-Dschema.path=$schema")
[ -n "${GOLDEN_DIR:-}" ] && props+=("-Dgolden.dir=$GOLDEN_DIR")
java "${props[@]}" -cp "$build/main:$build/test:$here/src/test/resources:$cp" org.junit.runner.JUnitCore "${classes[@]}" || exit 1
