// The app's logic that needs no Android: preprocessing, post-processing, metadata, golden checks.
// Built here without Gradle by core/run_tests.sh (javac --release 8 + JUnit 4).
plugins {
    `java-library`
}

java {
    sourceCompatibility = JavaVersion.VERSION_1_8
    targetCompatibility = JavaVersion.VERSION_1_8
}

dependencies {
    testImplementation("junit:junit:4.13.2")
}

// DescriptionSchemaTest checks descriptions against the schema shared with Python and JavaScript.
tasks.test {
    systemProperty("schema.path", rootDir.resolve("../ksac_runtime/model_description.schema.json").canonicalPath)
}
