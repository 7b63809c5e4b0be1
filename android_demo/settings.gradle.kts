// The Android demo: the app, and lmcore, the plain-JVM core it uses (tested without Android by
// ci_check.sh). Open this folder (android_demo/) in Android Studio.
pluginManagement {
    repositories {
        google {
            content {
                includeGroupByRegex("com\\.android.*")
                includeGroupByRegex("com\\.google.*")
                includeGroupByRegex("androidx.*")
            }
        }
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        // LiteRT (com.google.ai.edge.litert) is on Google's Maven only.
        google()
        mavenCentral()
    }
}

rootProject.name = "tflm-next-word"
include(":app", ":lmcore")
