plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

// LiteRT (formerly TensorFlow Lite) from Maven Central; bump to the newest release if you like.
val litertVersion = "1.4.0"

android {
    namespace = "dev.ksaczoo.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "dev.ksaczoo.demo"
        minSdk = 24
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_1_8
        targetCompatibility = JavaVersion.VERSION_1_8
    }
    kotlinOptions {
        jvmTarget = "1.8"
    }
    androidResources {
        // Memory-map the model straight from the APK.
        noCompress += "tflite"
    }
    sourceSets {
        // The golden vectors written by make_golden.py become assets of the instrumented test: golden/...
        getByName("androidTest").assets.srcDir("../core/src/test/resources")
    }
}

dependencies {
    implementation(project(":core"))
    implementation("com.google.ai.edge.litert:litert:$litertVersion")
    implementation("com.google.ai.edge.litert:litert-gpu:$litertVersion")
    implementation("com.google.ai.edge.litert:litert-gpu-api:$litertVersion")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.2")
    implementation("com.google.android.material:material:1.12.0")

    androidTestImplementation("androidx.test.ext:junit:1.2.1")
    androidTestImplementation("androidx.test:runner:1.6.2")
}
