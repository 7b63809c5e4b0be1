import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.tflmcompress.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.tflmcompress.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(
                getDefaultProguardFile("proguard-android-optimize.txt"),
                "proguard-rules.pro",
            )
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    androidResources {
        // Stored uncompressed so LiteRT maps the model straight from the APK instead of copying it.
        noCompress += "tflite"
    }
}

kotlin {
    compilerOptions {
        // LiteRT's classes are Java 17 bytecode; inlining from them needs the same target.
        jvmTarget.set(JvmTarget.JVM_17)
    }
}

dependencies {
    implementation(project(":lmcore"))
    implementation(libs.litert)
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.material)
}

// The bundle (model_meta.json, the .tflite, vocab.txt from scripts/convert.py) lives in
// src/main/assets. Put it there with ../copy_bundle.sh BUNDLE_DIR, or pass -Pbundle=BUNDLE_DIR
// (absolute, or relative to android_demo/) to any build, e.g.
//   ./gradlew :app:installDebug -Pbundle=../runs/ptb_small/tflite_int8
val bundleAssets: Directory = layout.projectDirectory.dir("src/main/assets")

val checkBundle by tasks.registering {
    group = "build"
    description = "Fails the build early when src/main/assets holds no bundle."
    val metaFile = bundleAssets.file("model_meta.json").asFile
    doLast {
        if (!metaFile.exists()) {
            throw GradleException(
                "no model bundle in ${metaFile.parentFile}: run android_demo/copy_bundle.sh " +
                    "BUNDLE_DIR (the folder scripts/convert.py wrote), or build with " +
                    "-Pbundle=BUNDLE_DIR",
            )
        }
    }
}
tasks.named("preBuild") { dependsOn(checkBundle) }

providers.gradleProperty("bundle").orNull?.let { bundlePath ->
    val bundleDir = rootDir.resolve(bundlePath)
    if (!bundleDir.resolve("model_meta.json").isFile) {
        throw GradleException(
            "-Pbundle=$bundlePath: $bundleDir has no model_meta.json; pass the folder " +
                "scripts/convert.py wrote",
        )
    }
    val copyBundle = tasks.register<Sync>("copyBundle") {
        group = "build"
        description = "Copies the bundle in -Pbundle=DIR into src/main/assets (replacing it)."
        from(bundleDir) { include("*.tflite", "model_meta.json", "vocab.txt") }
        into(bundleAssets)
        preserve { include(".gitkeep") }
    }
    checkBundle.configure { dependsOn(copyBundle) }
}
