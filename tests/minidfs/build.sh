#!/usr/bin/env bash
# Resolves the MiniDFSCluster launcher's classpath (once, cached in target/classpath.txt) and
# compiles the launcher with plain javac (again only when a source is newer than the classes).
# Needs java/javac 17 and mvn on PATH; tests/run.sh installs them. The first run downloads about
# 120 MB into ~/.m2 from Maven Central and fails loudly when that is unreachable.
# Output: target/classpath.txt and target/classes/ (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p target

for tool in java javac mvn; do
    command -v "$tool" >/dev/null || { echo "minidfs: $tool not found (tests/run.sh installs it)" >&2; exit 1; }
done

classpath_ok() {
    [ -s target/classpath.txt ] && [ target/classpath.txt -nt pom.xml ] || return 1
    # a jar removed from ~/.m2 since the last resolution means resolving again
    local jar
    while IFS= read -r jar; do [ -f "$jar" ] || return 1; done < <(tr ':' '\n' < target/classpath.txt)
}

if ! classpath_ok; then
    echo "minidfs: resolving the classpath with Maven (pom.xml)"
    rm -f target/classpath.txt
    if ! mvn -q -B dependency:build-classpath -Dmdep.outputFile=target/classpath.txt >target/mvn.log 2>&1 \
        || [ ! -s target/classpath.txt ]; then
        cat target/mvn.log >&2
        echo "minidfs: Maven could not resolve the launcher's classpath (is Maven Central reachable?)" >&2
        rm -f target/classpath.txt
        exit 1
    fi
fi

stamp=target/classes/.compiled
if [ ! -f "$stamp" ] || [ -n "$(find src -name '*.java' -newer "$stamp")" ] || [ target/classpath.txt -nt "$stamp" ]; then
    echo "minidfs: compiling the launcher"
    rm -rf target/classes
    mkdir -p target/classes
    javac -Xlint:all,-serial,-options -Werror -d target/classes -cp "$(cat target/classpath.txt)" src/*.java
    touch "$stamp"
fi
echo "minidfs: launcher ready ($(tr ':' '\n' < target/classpath.txt | wc -l) jars)"
