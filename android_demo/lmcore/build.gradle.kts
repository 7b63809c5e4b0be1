// The plain-JVM core of the app: bundle reading, tokenizing like the Python side, LSTM state
// bookkeeping and top-k. No Android API, so it is tested on any JVM (see ../ci_check.sh, which
// compiles and tests the same sources with javac and JUnit 4 without Gradle).
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

tasks.withType<JavaCompile>().configureEach {
    // --release 8 also checks the API: only what Android (minSdk 26) has.
    options.release.set(8)
    options.encoding = "UTF-8"
    options.compilerArgs.addAll(listOf("-Xlint:all", "-Xlint:-options"))
}

dependencies {
    testImplementation(libs.junit)
}
