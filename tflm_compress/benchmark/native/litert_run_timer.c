/* Times LiteRtRunCompiledModel on one .tflite, natively: no Python per run.
 *
 * Usage: litert_run_timer LIBLITERT_SO MODEL THREADS MIN_RUNS MIN_SECS
 *                         WARMUP_RUNS WARMUP_MIN_SECS MAX_SECS SEED
 *
 * ai-edge-litert ships libLiteRt.so (the LiteRT C API, CompiledModel) but no
 * headers, so the few entry points used here are declared below from LiteRT's
 * litert/c headers and looked up with dlsym. Opaque handles are void*; a
 * LiteRtRankedTensorType is only ever filled by LiteRT and handed back to it,
 * so it lives in an over-sized, aligned byte buffer and its layout is not
 * needed, only its first field (the element type, an int).
 *
 * Signature 0 is compiled for the CPU accelerator (XNNPACK, THREADS threads,
 * passed as the "xnnpack" opaque options' TOML, as the Python wrapper does).
 * Inputs are set once: float32 uniform in [-1, 1) from SEED, everything else
 * zero (host.benchmark_fixed_inputs' rule). The run loop is benchmark_model's:
 * at least MIN_RUNS runs and MIN_SECS seconds, none started after MAX_SECS;
 * only LiteRtRunCompiledModel is inside the clock (CLOCK_MONOTONIC).
 *
 * Prints one JSON object: init_ms (environment, model, compiled model,
 * buffers), the signature's input and output names, output_sums (the sum of
 * each float32 output after the last run, for checking what the runs
 * computed against another runtime; null for other types and non-finite
 * sums, e.g. an output LiteRT never writes because it names the same tensor
 * as another), warmup_ns and timed_ns (per run). Errors go to stderr, exit 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int Status; /* LiteRtStatus; 0 is kLiteRtStatusOk */
typedef void* Handle;
typedef size_t ParamIndex;

enum { kCpu = 1, kLockRead = 0, kLockWrite = 1, kFloat32 = 1, kTypeBytes = 4096 };

typedef Status (*CreateEnvironmentFn)(int, const void*, Handle*);
typedef Status (*CreateModelFromFileFn)(Handle, const char*, Handle*);
typedef Status (*CreateOptionsFn)(Handle*);
typedef Status (*SetOptionsHardwareAcceleratorsFn)(Handle, int);
typedef Status (*CreateOpaqueOptionsFn)(const char*, void*, void (*)(void*), Handle*);
typedef Status (*AddOpaqueOptionsFn)(Handle, Handle);
typedef Status (*CreateCompiledModelFn)(Handle, Handle, Handle, Handle*);
typedef Status (*GetModelSignatureFn)(Handle, ParamIndex, Handle*);
typedef Status (*GetNumSignatureTensorsFn)(Handle, ParamIndex*);
typedef Status (*GetSignatureTensorByIndexFn)(Handle, ParamIndex, Handle*);
typedef Status (*GetSignatureNameFn)(Handle, ParamIndex, const char**);
typedef Status (*GetRankedTensorTypeFn)(Handle, void*);
typedef Status (*GetBufferRequirementsFn)(Handle, ParamIndex, ParamIndex, Handle*);
typedef Status (*CreateManagedTensorBufferFromRequirementsFn)(Handle, const void*, Handle,
                                                              Handle*);
typedef Status (*GetTensorBufferSizeFn)(Handle, size_t*);
typedef Status (*LockTensorBufferFn)(Handle, void**, int);
typedef Status (*UnlockTensorBufferFn)(Handle);
typedef Status (*RunCompiledModelFn)(Handle, ParamIndex, size_t, Handle*, size_t, Handle*);
typedef const char* (*GetStatusStringFn)(Status);

static void* library;
static GetStatusStringFn status_string;

static void die(const char* what) {
  fprintf(stderr, "litert_run_timer: %s\n", what);
  exit(1);
}

static void* symbol(const char* name) {
  void* address = dlsym(library, name);
  if (!address) {
    fprintf(stderr, "litert_run_timer: %s not in the LiteRT library: %s\n", name, dlerror());
    exit(1);
  }
  return address;
}

static void check(Status status, const char* call) {
  if (status != 0) {
    fprintf(stderr, "litert_run_timer: %s failed: %s (status %d)\n", call,
            status_string ? status_string(status) : "?", status);
    exit(1);
  }
}

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void free_payload(void* payload) { free(payload); }

/* splitmix64: a fixed, seeded stream for the float inputs. */
static uint64_t rng_state;
static double next_uniform(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0;
}

typedef struct {
  int64_t* ns;
  size_t count, capacity;
} Samples;

static void append(Samples* samples, int64_t value) {
  if (samples->count == samples->capacity) {
    samples->capacity = samples->capacity ? 2 * samples->capacity : 1024;
    samples->ns = realloc(samples->ns, samples->capacity * sizeof(int64_t));
    if (!samples->ns) die("out of memory");
  }
  samples->ns[samples->count++] = value;
}

/* The buffers of one side (inputs or outputs) of signature 0. */
typedef struct {
  size_t count;
  Handle* buffers;
  const char** names;
  int* element_types;
} Side;

static Samples run_phase(RunCompiledModelFn run, Handle compiled, const Side* inputs,
                         const Side* outputs, long min_runs, double min_secs, double max_secs) {
  Samples samples = {0};
  int64_t now = now_ns();
  int64_t min_finish = now + (int64_t)(min_secs * 1e9);
  int64_t max_finish = now + (int64_t)(max_secs * 1e9);
  while (((long)samples.count < min_runs || now < min_finish) && now <= max_finish) {
    int64_t start = now_ns();
    check(run(compiled, 0, inputs->count, inputs->buffers, outputs->count, outputs->buffers),
          "LiteRtRunCompiledModel");
    int64_t end = now_ns();
    append(&samples, end - start);
    now = now_ns();
  }
  return samples;
}

static void print_samples(const char* key, const Samples* samples) {
  printf("\"%s\": [", key);
  for (size_t i = 0; i < samples->count; ++i) {
    printf(i ? ",%lld" : "%lld", (long long)samples->ns[i]);
  }
  printf("]");
}

static Side make_buffers(Handle environment, Handle compiled, Handle signature, int inputs,
                         int fill) {
  GetNumSignatureTensorsFn get_count =
      symbol(inputs ? "LiteRtGetNumSignatureInputs" : "LiteRtGetNumSignatureOutputs");
  GetSignatureNameFn get_name =
      symbol(inputs ? "LiteRtGetSignatureInputName" : "LiteRtGetSignatureOutputName");
  GetSignatureTensorByIndexFn get_tensor = symbol(
      inputs ? "LiteRtGetSignatureInputTensorByIndex" : "LiteRtGetSignatureOutputTensorByIndex");
  GetBufferRequirementsFn get_requirements =
      symbol(inputs ? "LiteRtGetCompiledModelInputBufferRequirements"
                    : "LiteRtGetCompiledModelOutputBufferRequirements");
  GetRankedTensorTypeFn get_type = symbol("LiteRtGetRankedTensorType");
  CreateManagedTensorBufferFromRequirementsFn create_buffer =
      symbol("LiteRtCreateManagedTensorBufferFromRequirements");
  GetTensorBufferSizeFn get_size = symbol("LiteRtGetTensorBufferSize");
  LockTensorBufferFn lock = symbol("LiteRtLockTensorBuffer");
  UnlockTensorBufferFn unlock = symbol("LiteRtUnlockTensorBuffer");

  ParamIndex n = 0;
  check(get_count(signature, &n), "LiteRtGetNumSignatureInputs/Outputs");
  Side side = {n, calloc(n ? n : 1, sizeof(Handle)), calloc(n ? n : 1, sizeof(char*)),
               calloc(n ? n : 1, sizeof(int))};
  if (!side.buffers || !side.names || !side.element_types) die("out of memory");
  Handle* buffers = side.buffers;
  for (ParamIndex i = 0; i < n; ++i) {
    Handle tensor = NULL, requirements = NULL;
    _Alignas(16) unsigned char type[kTypeBytes];
    memset(type, 0, sizeof(type));
    check(get_name(signature, i, &side.names[i]), "LiteRtGetSignature*Name");
    check(get_tensor(signature, i, &tensor), "LiteRtGetSignature*TensorByIndex");
    check(get_type(tensor, type), "LiteRtGetRankedTensorType");
    memcpy(&side.element_types[i], type, sizeof(int));
    check(get_requirements(compiled, 0, i, &requirements),
          "LiteRtGetCompiledModel*BufferRequirements");
    check(create_buffer(environment, type, requirements, &buffers[i]),
          "LiteRtCreateManagedTensorBufferFromRequirements");
    if (!fill) continue;
    size_t bytes = 0;
    void* data = NULL;
    check(get_size(buffers[i], &bytes), "LiteRtGetTensorBufferSize");
    check(lock(buffers[i], &data, kLockWrite), "LiteRtLockTensorBuffer");
    if (side.element_types[i] == kFloat32) {
      float* values = data;
      for (size_t k = 0; k < bytes / sizeof(float); ++k) {
        values[k] = (float)(2.0 * next_uniform() - 1.0);
      }
    } else {
      memset(data, 0, bytes);
    }
    check(unlock(buffers[i]), "LiteRtUnlockTensorBuffer");
  }
  return side;
}

static void print_names(const char* key, const Side* side) {
  printf("\"%s\": [", key);
  for (size_t i = 0; i < side->count; ++i) {
    printf(i ? ", \"%s\"" : "\"%s\"", side->names[i]);
  }
  printf("]");
}

static void print_output_sums(const Side* outputs) {
  GetTensorBufferSizeFn get_size = symbol("LiteRtGetTensorBufferSize");
  LockTensorBufferFn lock = symbol("LiteRtLockTensorBuffer");
  UnlockTensorBufferFn unlock = symbol("LiteRtUnlockTensorBuffer");
  printf("\"output_sums\": [");
  for (size_t i = 0; i < outputs->count; ++i) {
    if (i) printf(", ");
    if (outputs->element_types[i] != kFloat32) {
      printf("null");
      continue;
    }
    size_t bytes = 0;
    void* data = NULL;
    check(get_size(outputs->buffers[i], &bytes), "LiteRtGetTensorBufferSize");
    check(lock(outputs->buffers[i], &data, kLockRead), "LiteRtLockTensorBuffer");
    double sum = 0.0;
    const float* values = data;
    for (size_t k = 0; k < bytes / sizeof(float); ++k) sum += values[k];
    check(unlock(outputs->buffers[i]), "LiteRtUnlockTensorBuffer");
    if (isfinite(sum)) {
      printf("%.9g", sum);
    } else {
      printf("null"); /* JSON has no NaN; e.g. an output LiteRT never writes. */
    }
  }
  printf("]");
}

int main(int argc, char** argv) {
  if (argc != 10) {
    die("usage: litert_run_timer LIBLITERT_SO MODEL THREADS MIN_RUNS MIN_SECS WARMUP_RUNS "
        "WARMUP_MIN_SECS MAX_SECS SEED");
  }
  const char* model_path = argv[2];
  int threads = atoi(argv[3]);
  long min_runs = atol(argv[4]), warmup_runs = atol(argv[6]);
  double min_secs = atof(argv[5]), warmup_min_secs = atof(argv[7]), max_secs = atof(argv[8]);
  rng_state = strtoull(argv[9], NULL, 10);

  library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!library) {
    fprintf(stderr, "litert_run_timer: cannot load %s: %s\n", argv[1], dlerror());
    return 1;
  }
  status_string = (GetStatusStringFn)dlsym(library, "LiteRtGetStatusString");

  int64_t init_start = now_ns();
  Handle environment = NULL, model = NULL, options = NULL, cpu_options = NULL, compiled = NULL;
  check(((CreateEnvironmentFn)symbol("LiteRtCreateEnvironment"))(0, NULL, &environment),
        "LiteRtCreateEnvironment");
  check(((CreateModelFromFileFn)symbol("LiteRtCreateModelFromFile"))(environment, model_path,
                                                                      &model),
        "LiteRtCreateModelFromFile");
  check(((CreateOptionsFn)symbol("LiteRtCreateOptions"))(&options), "LiteRtCreateOptions");
  check(((SetOptionsHardwareAcceleratorsFn)symbol("LiteRtSetOptionsHardwareAccelerators"))(
            options, kCpu),
        "LiteRtSetOptionsHardwareAccelerators");
  char* toml = malloc(64);
  if (!toml) die("out of memory");
  snprintf(toml, 64, "num_threads = %d\n", threads);
  check(((CreateOpaqueOptionsFn)symbol("LiteRtCreateOpaqueOptions"))("xnnpack", toml,
                                                                      free_payload, &cpu_options),
        "LiteRtCreateOpaqueOptions");
  check(((AddOpaqueOptionsFn)symbol("LiteRtAddOpaqueOptions"))(options, cpu_options),
        "LiteRtAddOpaqueOptions");
  check(((CreateCompiledModelFn)symbol("LiteRtCreateCompiledModel"))(environment, model, options,
                                                                      &compiled),
        "LiteRtCreateCompiledModel");
  Handle signature = NULL;
  check(((GetModelSignatureFn)symbol("LiteRtGetModelSignature"))(model, 0, &signature),
        "LiteRtGetModelSignature");
  Side inputs = make_buffers(environment, compiled, signature, 1, 1);
  Side outputs = make_buffers(environment, compiled, signature, 0, 0);
  double init_ms = (double)(now_ns() - init_start) / 1e6;

  RunCompiledModelFn run = symbol("LiteRtRunCompiledModel");
  Samples warmup = run_phase(run, compiled, &inputs, &outputs, warmup_runs, warmup_min_secs,
                             max_secs);
  Samples timed = run_phase(run, compiled, &inputs, &outputs, min_runs, min_secs, max_secs);

  printf("{\"init_ms\": %.4f, ", init_ms);
  print_names("inputs", &inputs);
  printf(", ");
  print_names("outputs", &outputs);
  printf(", ");
  print_output_sums(&outputs);
  printf(", ");
  print_samples("warmup_ns", &warmup);
  printf(", ");
  print_samples("timed_ns", &timed);
  printf("}\n");
  /* The process exits here; LiteRT's objects go with it. */
  return 0;
}
