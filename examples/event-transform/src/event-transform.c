// event-transform: JSON-Lines sensor events in, validated + normalised + enriched events out (stdout), per-device
// tumbling-window aggregates into a state directory. The rules (schema, reject reasons, unit factors, rounding,
// window and p95 definitions, output formats, exit codes) are specified in ../README.md; the JavaScript
// implementation in ../js/ follows the same text and produces byte-identical output.
//
// Builds for WASI P1 (clang --target=wasm32-wasi) and natively (any C11 compiler); no clock, no randomness.
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_LINE_BYTES (64 * 1024)
#define MAX_NAME_BYTES 64
#define MAX_TS_MS 253402300799999LL /* 9999-12-31T23:59:59.999Z */
#define MAX_ABS_VALUE 1e6

enum { EXIT_USAGE = 64, EXIT_DATAERR = 65, EXIT_NOINPUT = 66, EXIT_SOFTWARE = 70, EXIT_CANTCREAT = 73, EXIT_IOERR = 74 };

static void die(int code, const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "event-transform: ");
  fprintf(stderr, fmt, a, b);
  fputc('\n', stderr);
  exit(code);
}

/* Memory is grow-only: a batch program's peak is its total, so nothing is ever freed; a growing array is copied
   into a block twice its size and the old block abandoned (at most 2x the live size). It also keeps the program
   clear of heap reuse on engines that run the preview1 adapter over Debian's wasi-libc without correcting
   `memory.size` (its pre-2023 dlmalloc then takes the adapter's pages as heap once memory is freed and reused;
   VYR's runtime corrects it: packages/runtime/src/wasm-memory.ts). */
static void *alloc_bytes(size_t n) {
  void *q = malloc(n ? n : 1);
  if (!q) die(EXIT_SOFTWARE, "out of memory%s%s", "", "");
  return q;
}

static void *grow(void *old, size_t old_bytes, size_t new_bytes) {
  void *q = alloc_bytes(new_bytes);
  if (old_bytes) memcpy(q, old, old_bytes);
  return q;
}

/* ---------- UTF-8 (WHATWG / RFC 3629: no overlongs, no surrogates, max U+10FFFF) ---------- */

static int utf8_valid(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (i + len > n) return 0;
    if (s[i + 1] < lo || s[i + 1] > hi) return 0;
    for (size_t k = 2; k < len; k++) if (s[i + k] < 0x80 || s[i + k] > 0xBF) return 0;
    i += len;
  }
  return 1;
}

/* ---------- JSON (RFC 8259): a validating parser; nested values are checked without recursion ---------- */

typedef struct {
  const char *p, *end;
} Json;

typedef enum { J_NONE = 0, J_STRING, J_NUMBER, J_OTHER } JType;

typedef struct {
  JType type;
  char str[MAX_NAME_BYTES + 1]; /* decoded string, when type == J_STRING and it fits */
  int str_fits;                 /* 0 when the decoded string is longer than MAX_NAME_BYTES */
  double num;
} JField;

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static void skip_ws(Json *j) { while (j->p < j->end && is_ws(*j->p)) j->p++; }

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

/* Appends code point cp as UTF-8 (lone surrogates as their 3-byte form) to buf if it fits; tracks the length. */
static void put_cp(char *buf, size_t cap, size_t *len, unsigned cp) {
  char tmp[4];
  size_t n;
  if (cp < 0x80) { tmp[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { tmp[0] = (char)(0xC0 | (cp >> 6)); tmp[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) {
    tmp[0] = (char)(0xE0 | (cp >> 12)); tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); tmp[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
  } else {
    tmp[0] = (char)(0xF0 | (cp >> 18)); tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); tmp[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
  }
  if (buf && *len + n <= cap) memcpy(buf + *len, tmp, n);
  *len += n;
}

/* Parses a string at j->p (which is '"'). Decodes into buf (cap bytes) when given; *len gets the decoded length. */
static int parse_string(Json *j, char *buf, size_t cap, size_t *len) {
  j->p++;
  *len = 0;
  while (j->p < j->end) {
    unsigned char c = (unsigned char)*j->p;
    if (c == '"') { j->p++; return 1; }
    if (c < 0x20) return 0;
    if (c != '\\') {
      if (buf && *len < cap) buf[*len] = (char)c;
      (*len)++;
      j->p++;
      continue;
    }
    if (j->end - j->p < 2) return 0;
    char e = j->p[1];
    j->p += 2;
    unsigned cp;
    switch (e) {
      case '"': cp = '"'; break;
      case '\\': cp = '\\'; break;
      case '/': cp = '/'; break;
      case 'b': cp = '\b'; break;
      case 'f': cp = '\f'; break;
      case 'n': cp = '\n'; break;
      case 'r': cp = '\r'; break;
      case 't': cp = '\t'; break;
      case 'u': {
        if (j->end - j->p < 4 || !hex4(j->p, &cp)) return 0;
        j->p += 4;
        unsigned lo;
        if (cp >= 0xD800 && cp <= 0xDBFF && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' &&
            hex4(j->p + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          j->p += 6;
        }
        break;
      }
      default: return 0;
    }
    put_cp(buf, cap, len, cp);
  }
  return 0;
}

/* Parses a number (RFC 8259 grammar, then strtod: correctly rounded, like JSON.parse). */
static int parse_number(Json *j, double *out) {
  const char *s = j->p;
  if (j->p < j->end && *j->p == '-') j->p++;
  if (j->p >= j->end) return 0;
  if (*j->p == '0') j->p++;
  else if (*j->p >= '1' && *j->p <= '9') while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  else return 0;
  if (j->p < j->end && *j->p == '.') {
    j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->end && (*j->p == '+' || *j->p == '-')) j->p++;
    if (j->p >= j->end || *j->p < '0' || *j->p > '9') return 0;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') j->p++;
  }
  static char text[MAX_LINE_BYTES + 1]; /* a number is never longer than its line */
  size_t n = (size_t)(j->p - s);
  if (out) {
    memcpy(text, s, n);
    text[n] = 0;
    *out = strtod(text, NULL);
  }
  return 1;
}

static int parse_literal(Json *j, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0) return 0;
  j->p += n;
  return 1;
}

/* Validates one value of any kind; arrays and objects are walked with an explicit stack (no recursion). */
static int skip_value(Json *j, char *stack) {
  size_t depth = 0;
  for (;;) {
    skip_ws(j);
    if (j->p >= j->end) return 0;
    char c = *j->p;
    /* a value */
    if (c == '{' || c == '[') {
      j->p++;
      skip_ws(j);
      char close = c == '{' ? '}' : ']';
      if (j->p < j->end && *j->p == close) { j->p++; goto after_value; }
      stack[depth++] = close;
      if (close == '}') goto member_key;
      continue;
    }
    if (c == '"') { size_t len; if (!parse_string(j, NULL, 0, &len)) return 0; }
    else if (c == 't') { if (!parse_literal(j, "true")) return 0; }
    else if (c == 'f') { if (!parse_literal(j, "false")) return 0; }
    else if (c == 'n') { if (!parse_literal(j, "null")) return 0; }
    else if (!parse_number(j, NULL)) return 0;
  after_value:
    for (;;) {
      if (depth == 0) return 1;
      skip_ws(j);
      if (j->p >= j->end) return 0;
      char close = stack[depth - 1];
      if (*j->p == close) { j->p++; depth--; continue; }
      if (*j->p != ',') return 0;
      j->p++;
      if (close == ']') break;
    member_key:
      skip_ws(j);
      if (j->p >= j->end || *j->p != '"') return 0;
      { size_t len; if (!parse_string(j, NULL, 0, &len)) return 0; }
      skip_ws(j);
      if (j->p >= j->end || *j->p != ':') return 0;
      j->p++;
      break;
    }
  }
}

/* Parses a string value into f: decoded, and marked as not fitting when longer than MAX_NAME_BYTES or holding NUL. */
static int capture_string(Json *j, JField *f) {
  size_t len;
  if (!parse_string(j, f->str, MAX_NAME_BYTES, &len)) return 0;
  f->type = J_STRING;
  f->str_fits = len <= MAX_NAME_BYTES && memchr(f->str, 0, len) == NULL;
  f->str[f->str_fits ? len : 0] = 0;
  return 1;
}

/* ---------- events ---------- */

enum { F_DEVICE, F_TS, F_METRIC, F_VALUE, F_UNIT, F_COUNT };
static const char *FIELD_NAMES[F_COUNT] = {"device", "ts", "metric", "value", "unit"};

typedef enum { P_OK, P_INVALID, P_NOT_OBJECT } ParseResult;

/* Parses one line: a JSON object whose members named in FIELD_NAMES are captured (the last one wins, as with
   JSON.parse); any other member is validated and ignored. */
static ParseResult parse_event(const char *line, size_t n, JField fields[F_COUNT], char *stack) {
  Json j = {line, line + n};
  memset(fields, 0, sizeof(JField) * F_COUNT);
  skip_ws(&j);
  if (j.p >= j.end) return P_INVALID;
  if (*j.p != '{') {
    if (!skip_value(&j, stack)) return P_INVALID;
    skip_ws(&j);
    return j.p == j.end ? P_NOT_OBJECT : P_INVALID;
  }
  j.p++;
  skip_ws(&j);
  if (j.p < j.end && *j.p == '}') {
    j.p++;
  } else {
    for (;;) {
      skip_ws(&j);
      if (j.p >= j.end || *j.p != '"') return P_INVALID;
      char key[16];
      size_t klen;
      if (!parse_string(&j, key, sizeof key, &klen)) return P_INVALID;
      int f = -1;
      for (int i = 0; i < F_COUNT && klen < sizeof key; i++)
        if (strlen(FIELD_NAMES[i]) == klen && memcmp(FIELD_NAMES[i], key, klen) == 0) f = i;
      skip_ws(&j);
      if (j.p >= j.end || *j.p != ':') return P_INVALID;
      j.p++;
      skip_ws(&j);
      if (j.p >= j.end) return P_INVALID;
      if (f < 0) {
        if (!skip_value(&j, stack)) return P_INVALID;
      } else if (*j.p == '"') {
        if (!capture_string(&j, &fields[f])) return P_INVALID;
      } else if (*j.p == '-' || (*j.p >= '0' && *j.p <= '9')) {
        if (!parse_number(&j, &fields[f].num)) return P_INVALID;
        fields[f].type = J_NUMBER;
      } else {
        if (!skip_value(&j, stack)) return P_INVALID;
        fields[f].type = J_OTHER;
      }
      skip_ws(&j);
      if (j.p >= j.end) return P_INVALID;
      if (*j.p == ',') { j.p++; continue; }
      if (*j.p == '}') { j.p++; break; }
      return P_INVALID;
    }
  }
  skip_ws(&j);
  return j.p == j.end ? P_OK : P_INVALID;
}

/* A name: 1..64 bytes of [A-Za-z0-9._:-]. */
static int valid_name(const JField *f) {
  if (f->type != J_STRING || !f->str_fits || f->str[0] == 0) return 0;
  for (const char *c = f->str; *c; c++) {
    char x = *c;
    if (!((x >= 'a' && x <= 'z') || (x >= 'A' && x <= 'Z') || (x >= '0' && x <= '9') || x == '.' || x == '_' ||
          x == ':' || x == '-'))
      return 0;
  }
  return 1;
}

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 1;
}

/* RFC 3339 date-time (section 5.6): YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM); 't'/'z' accepted; the fraction is
   truncated to milliseconds; second 60 (leap second) is rejected. */
static int parse_rfc3339(const char *s, int64_t *ms) {
  size_t n = strlen(s);
  int Y, M, D, h, m, sec, oh = 0, om = 0, sign = 0;
  if (n < 20) return 0;
  if (!digits(s, 4, &Y) || s[4] != '-' || !digits(s + 5, 2, &M) || s[7] != '-' || !digits(s + 8, 2, &D)) return 0;
  if (s[10] != 'T' && s[10] != 't') return 0;
  if (!digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &m) || s[16] != ':' || !digits(s + 17, 2, &sec))
    return 0;
  size_t i = 19;
  int frac = 0;
  if (s[i] == '.') {
    i++;
    size_t start = i;
    while (s[i] >= '0' && s[i] <= '9') {
      if (i - start < 3) frac = frac * 10 + (s[i] - '0');
      i++;
    }
    if (i == start) return 0;
    for (size_t k = i - start; k < 3; k++) frac *= 10;
  }
  if (s[i] == 'Z' || s[i] == 'z') {
    i++;
  } else if (s[i] == '+' || s[i] == '-') {
    sign = s[i] == '+' ? 1 : -1;
    if (n - i != 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' || !digits(s + i + 4, 2, &om)) return 0;
    i += 6;
  } else {
    return 0;
  }
  if (i != n) return 0;
  static const int MDAYS[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (Y % 4 == 0 && Y % 100 != 0) || Y % 400 == 0;
  if (M < 1 || M > 12 || D < 1 || D > MDAYS[M - 1] + (M == 2 && leap)) return 0;
  if (h > 23 || m > 59 || sec > 59 || oh > 23 || om > 59) return 0;
  int64_t t = days_from_civil(Y, M, D) * 86400000LL + (int64_t)h * 3600000 + (int64_t)m * 60000 + (int64_t)sec * 1000 +
              frac;
  t -= (int64_t)sign * ((int64_t)oh * 3600000 + (int64_t)om * 60000);
  if (t < 0 || t > MAX_TS_MS) return 0;
  *ms = t;
  return 1;
}

/* Units: metric, unit, how to reach the canonical unit, and the canonical unit's plausible range. */
typedef struct {
  const char *metric, *unit, *canonical;
  int op;        /* 0: x * k, 1: x / k, 2: x + k, 3: (x - 32) * 5 / 9 */
  double k;
  double min, max; /* range of the canonical value, inclusive */
} Unit;

static const Unit UNITS[] = {
    {"temperature", "degC", "degC", 0, 1, -273.15, 10000},
    {"temperature", "degF", "degC", 3, 0, -273.15, 10000},
    {"temperature", "K", "degC", 2, -273.15, -273.15, 10000},
    {"pressure", "hPa", "hPa", 0, 1, 0, 100000},
    {"pressure", "Pa", "hPa", 1, 100, 0, 100000},
    {"pressure", "kPa", "hPa", 0, 10, 0, 100000},
    {"pressure", "bar", "hPa", 0, 1000, 0, 100000},
    {"pressure", "psi", "hPa", 0, 68.94757293168361, 0, 100000},
    {"humidity", "%", "%", 0, 1, 0, 100},
    {"voltage", "V", "V", 0, 1, -MAX_ABS_VALUE, MAX_ABS_VALUE},
    {"voltage", "mV", "V", 1, 1000, -MAX_ABS_VALUE, MAX_ABS_VALUE},
};
#define N_UNITS (sizeof UNITS / sizeof UNITS[0])

static int known_metric(const char *m) {
  for (size_t i = 0; i < N_UNITS; i++) if (strcmp(UNITS[i].metric, m) == 0) return 1;
  return 0;
}

static double convert(const Unit *u, double x) {
  switch (u->op) {
    case 0: return x * u->k;
    case 1: return x / u->k;
    case 2: return x + u->k;
    default: return (x - 32) * 5 / 9;
  }
}

/* Thousandths, rounded half away from zero: the one rounding of the program. */
static int64_t to_milli(double x) {
  return x < 0 ? -(int64_t)floor(-x * 1000 + 0.5) : (int64_t)floor(x * 1000 + 0.5);
}

static void put_milli(FILE *f, int64_t v) {
  uint64_t a = v < 0 ? (uint64_t)(-v) : (uint64_t)v;
  fprintf(f, "%s%llu.%03llu", v < 0 ? "-" : "", (unsigned long long)(a / 1000), (unsigned long long)(a % 1000));
}

/* ---------- reference table: device -> site, zone ---------- */

typedef struct {
  char id[MAX_NAME_BYTES + 1], site[MAX_NAME_BYTES + 1], zone[MAX_NAME_BYTES + 1];
} Device;

static Device *devices;
static size_t n_devices;

static int cmp_device(const void *a, const void *b) { return strcmp(((const Device *)a)->id, ((const Device *)b)->id); }

static const Device *find_device(const char *id) {
  Device key;
  strcpy(key.id, id);
  return bsearch(&key, devices, n_devices, sizeof(Device), cmp_device);
}

static char *read_all(FILE *f, size_t *n) {
  size_t cap = 1 << 16, len = 0;
  char *buf = alloc_bytes(cap);
  size_t r;
  while ((r = fread(buf + len, 1, cap - len, f)) > 0) {
    len += r;
    if (len == cap) buf = grow(buf, cap, cap * 2), cap *= 2;
  }
  *n = len;
  return buf;
}

/* The reference file: a JSON array of objects, each with string members "device", "site", "zone" (names as above;
   other members ignored); device ids unique. */
static void load_reference(const char *path, const char *slot) {
  FILE *f = fopen(path, "rb");
  if (!f) die(EXIT_NOINPUT, "reference state missing: slot '%s' has no %s (bind the reference state)", slot, path);
  size_t n;
  char *text = read_all(f, &n);
  fclose(f);
  char *stack = alloc_bytes(n + 1);
  Json j = {text, text + n};
  size_t cap = 0;
  skip_ws(&j);
  if (j.p >= j.end || *j.p != '[') die(EXIT_DATAERR, "reference %s%s: not a JSON array", path, "");
  j.p++;
  skip_ws(&j);
  int first = 1;
  while (!(j.p < j.end && *j.p == ']')) {
    if (!first) {
      if (j.p >= j.end || *j.p != ',') die(EXIT_DATAERR, "reference %s%s: invalid JSON", path, "");
      j.p++;
      skip_ws(&j);
    }
    first = 0;
    const char *start = j.p;
    if (j.p >= j.end || *j.p != '{' || !skip_value(&j, stack))
      die(EXIT_DATAERR, "reference %s%s: each entry must be a JSON object", path, "");
    /* Walk the entry again (already validated) and capture its members; the last one of a name wins. */
    Json e = {start, j.p};
    JField got[3];
    memset(got, 0, sizeof got);
    static const char *NAMES[3] = {"device", "site", "zone"};
    e.p++;
    skip_ws(&e);
    while (*e.p != '}') {
      if (*e.p == ',') { e.p++; skip_ws(&e); }
      char key[16];
      size_t klen;
      parse_string(&e, key, sizeof key, &klen);
      skip_ws(&e);
      e.p++; /* the ':' */
      skip_ws(&e);
      int which = -1;
      for (int k = 0; k < 3 && klen < sizeof key; k++)
        if (strlen(NAMES[k]) == klen && memcmp(NAMES[k], key, klen) == 0) which = k;
      if (which >= 0 && *e.p == '"') {
        capture_string(&e, &got[which]);
      } else {
        skip_value(&e, stack);
        if (which >= 0) got[which].type = J_OTHER;
      }
      skip_ws(&e);
    }
    Device d;
    for (int k = 0; k < 3; k++) {
      if (got[k].type == J_NONE) die(EXIT_DATAERR, "reference %s: an entry has no \"%s\"", path, NAMES[k]);
      if (!valid_name(&got[k])) die(EXIT_DATAERR, "reference %s: \"%s\" of an entry is not a valid name", path, NAMES[k]);
    }
    strcpy(d.id, got[0].str);
    strcpy(d.site, got[1].str);
    strcpy(d.zone, got[2].str);
    if (n_devices == cap) {
      devices = grow(devices, cap * sizeof(Device), (cap ? cap * 2 : 64) * sizeof(Device));
      cap = cap ? cap * 2 : 64;
    }
    devices[n_devices++] = d;
    skip_ws(&j);
  }
  j.p++;
  skip_ws(&j);
  if (j.p != j.end) die(EXIT_DATAERR, "reference %s%s: invalid JSON after the array", path, "");
  qsort(devices, n_devices, sizeof(Device), cmp_device);
  for (size_t i = 1; i < n_devices; i++)
    if (strcmp(devices[i - 1].id, devices[i].id) == 0)
      die(EXIT_DATAERR, "reference %s: device '%s' appears twice", path, devices[i].id);
}

/* ---------- aggregation: (device, metric, window) -> values ---------- */

typedef struct {
  const Device *device;
  const Unit *unit; /* its metric and canonical unit */
  int64_t window;
  int64_t *values;
  size_t n, cap;
} Group;

static Group *groups;
static size_t n_groups, groups_cap;
static size_t *table; /* open addressing: index + 1 into groups, 0 = empty */
static size_t table_cap;

static uint64_t group_hash(const Device *d, const char *metric, int64_t window) {
  uint64_t h = 1469598103934665603ULL;
  for (const char *c = d->id; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
  for (const char *c = metric; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
  h ^= (uint64_t)window;
  h *= 0x9E3779B97F4A7C15ULL;
  return h ^ (h >> 29);
}

static Group *group_for(const Device *d, const Unit *u, int64_t window) {
  if ((n_groups + 1) * 2 > table_cap) {
    size_t ncap = table_cap ? table_cap * 2 : 1024;
    size_t *nt = alloc_bytes(ncap * sizeof(size_t));
    memset(nt, 0, ncap * sizeof(size_t));
    for (size_t i = 0; i < n_groups; i++) {
      size_t s = group_hash(groups[i].device, groups[i].unit->metric, groups[i].window) & (ncap - 1);
      while (nt[s]) s = (s + 1) & (ncap - 1);
      nt[s] = i + 1;
    }
    table = nt;
    table_cap = ncap;
  }
  size_t s = group_hash(d, u->metric, window) & (table_cap - 1);
  while (table[s]) {
    Group *g = &groups[table[s] - 1];
    if (g->device == d && g->window == window && strcmp(g->unit->metric, u->metric) == 0) return g;
    s = (s + 1) & (table_cap - 1);
  }
  if (n_groups == groups_cap) {
    size_t ncap = groups_cap ? groups_cap * 2 : 256;
    groups = grow(groups, groups_cap * sizeof(Group), ncap * sizeof(Group));
    groups_cap = ncap;
  }
  Group *g = &groups[n_groups];
  memset(g, 0, sizeof *g);
  g->device = d;
  g->unit = u;
  g->window = window;
  table[s] = ++n_groups;
  return g;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int cmp_group(const void *a, const void *b) {
  const Group *x = a, *y = b;
  if (x->window != y->window) return x->window < y->window ? -1 : 1;
  int c = strcmp(x->device->id, y->device->id);
  return c ? c : strcmp(x->unit->metric, y->unit->metric);
}

/* ---------- rejects ---------- */

static const char *REASONS[] = {"bad_device", "bad_metric", "bad_ts",         "bad_unit",        "bad_value",
                                "invalid_json", "invalid_utf8", "line_too_long", "missing_device", "missing_metric",
                                "missing_ts",  "missing_unit", "missing_value", "not_object",      "out_of_range",
                                "unknown_device"};
#define N_REASONS (sizeof REASONS / sizeof REASONS[0])
static uint64_t reason_counts[N_REASONS];

static FILE *rejects;
static char out_dir[1024];

static void write_failed(const char *what) { die(EXIT_IOERR, "cannot write %s: %s", what, strerror(errno)); }

/* Closes a file written with stdio; any failed write since it was opened (stdio keeps going after one, so the
   error flag is the only reliable record) or a failed close is a write failure. */
static void close_written(FILE *f, const char *what) {
  int failed = ferror(f);
  if (fclose(f) != 0 || failed) write_failed(what);
}

static void reject(uint64_t line, const char *reason) {
  for (size_t i = 0; i < N_REASONS; i++)
    if (strcmp(REASONS[i], reason) == 0) reason_counts[i]++;
  if (fprintf(rejects, "{\"line\":%llu,\"reason\":\"%s\"}\n", (unsigned long long)line, reason) < 0)
    write_failed("rejects.jsonl");
}

static uint64_t n_in, n_out, n_rejected;
static int64_t window_ms = 60000;

static void process_line(const char *line, size_t n, uint64_t lineno, char *stack) {
  size_t k = 0;
  while (k < n && is_ws(line[k])) k++;
  if (k == n) return; /* blank: not an event */
  n_in++;
  if (!utf8_valid((const unsigned char *)line, n)) { n_rejected++; reject(lineno, "invalid_utf8"); return; }
  JField f[F_COUNT];
  ParseResult r = parse_event(line, n, f, stack);
  const char *why = NULL;
  int64_t ts = 0;
  const Unit *unit = NULL;
  const Device *dev = NULL;
  double value = 0;
  if (r == P_INVALID) why = "invalid_json";
  else if (r == P_NOT_OBJECT) why = "not_object";
  else if (f[F_DEVICE].type == J_NONE) why = "missing_device";
  else if (!valid_name(&f[F_DEVICE])) why = "bad_device";
  else if (f[F_TS].type == J_NONE) why = "missing_ts";
  else if (f[F_TS].type == J_STRING) {
    if (!f[F_TS].str_fits || !parse_rfc3339(f[F_TS].str, &ts)) why = "bad_ts";
  } else if (f[F_TS].type == J_NUMBER) {
    double t = f[F_TS].num;
    if (!(t >= 0 && t <= (double)MAX_TS_MS) || floor(t) != t) why = "bad_ts";
    else ts = (int64_t)t;
  } else {
    why = "bad_ts";
  }
  if (!why) {
    if (f[F_METRIC].type == J_NONE) why = "missing_metric";
    else if (!valid_name(&f[F_METRIC]) || !known_metric(f[F_METRIC].str)) why = "bad_metric";
    else if (f[F_VALUE].type == J_NONE) why = "missing_value";
    else if (f[F_VALUE].type != J_NUMBER || !isfinite(f[F_VALUE].num)) why = "bad_value";
    else if (f[F_UNIT].type == J_NONE) why = "missing_unit";
    else {
      for (size_t i = 0; i < N_UNITS && f[F_UNIT].type == J_STRING && f[F_UNIT].str_fits; i++)
        if (strcmp(UNITS[i].metric, f[F_METRIC].str) == 0 && strcmp(UNITS[i].unit, f[F_UNIT].str) == 0) unit = &UNITS[i];
      if (!unit) why = "bad_unit";
    }
  }
  if (!why) {
    value = convert(unit, f[F_VALUE].num);
    if (!(value >= unit->min && value <= unit->max) || !(fabs(value) <= MAX_ABS_VALUE)) why = "out_of_range";
  }
  if (!why && !(dev = find_device(f[F_DEVICE].str))) why = "unknown_device";
  if (why) { n_rejected++; reject(lineno, why); return; }

  int64_t milli = to_milli(value);
  int64_t window = ts - ts % window_ms;
  printf("{\"device\":\"%s\",\"site\":\"%s\",\"zone\":\"%s\",\"ts\":%lld,\"metric\":\"%s\",\"value\":", dev->id, dev->site,
         dev->zone, (long long)ts, unit->metric);
  put_milli(stdout, milli);
  printf(",\"unit\":\"%s\",\"window\":%lld}\n", unit->canonical, (long long)window);
  n_out++;
  Group *g = group_for(dev, unit, window);
  if (g->n == g->cap) {
    size_t ncap = g->cap ? g->cap * 2 : 8;
    g->values = grow(g->values, g->cap * sizeof(int64_t), ncap * sizeof(int64_t));
    g->cap = ncap;
  }
  g->values[g->n++] = milli;
}

/* Mean in thousandths: sum / n rounded half away from zero, in integers. */
static int64_t mean_milli(int64_t sum, int64_t n) {
  int64_t q = sum / n, r = sum % n;
  if (2 * (r < 0 ? -r : r) >= n) q += sum < 0 ? -1 : 1;
  return q;
}

static void write_windows(void) {
  qsort(groups, n_groups, sizeof(Group), cmp_group);
  char path[1200];
  snprintf(path, sizeof path, "%s/windows", out_dir);
  if (n_groups && mkdir(path, 0755) != 0 && errno != EEXIST) write_failed("windows/");
  FILE *f = NULL;
  for (size_t i = 0; i < n_groups; i++) {
    Group *g = &groups[i];
    if (i == 0 || g->window != groups[i - 1].window) {
      if (f) close_written(f, "a window file");
      snprintf(path, sizeof path, "%s/windows/%lld.jsonl", out_dir, (long long)g->window);
      if (!(f = fopen(path, "wb"))) write_failed(path);
    }
    qsort(g->values, g->n, sizeof(int64_t), cmp_i64);
    int64_t sum = 0;
    for (size_t k = 0; k < g->n; k++) sum += g->values[k];
    size_t rank = (95 * g->n + 99) / 100; /* nearest rank: ceil(0.95 n) */
    fprintf(f, "{\"device\":\"%s\",\"site\":\"%s\",\"zone\":\"%s\",\"metric\":\"%s\",\"unit\":\"%s\",\"window\":%lld,"
               "\"count\":%llu,\"min\":",
            g->device->id, g->device->site, g->device->zone, g->unit->metric, g->unit->canonical, (long long)g->window,
            (unsigned long long)g->n);
    put_milli(f, g->values[0]);
    fputs(",\"max\":", f);
    put_milli(f, g->values[g->n - 1]);
    fputs(",\"mean\":", f);
    put_milli(f, mean_milli(sum, (int64_t)g->n));
    fputs(",\"p95\":", f);
    put_milli(f, g->values[rank - 1]);
    if (fputs("}\n", f) < 0) write_failed("a window file");
  }
  if (f) close_written(f, "a window file");
}

static size_t count_windows(void) {
  size_t n = 0;
  for (size_t i = 0; i < n_groups; i++) n += i == 0 || groups[i].window != groups[i - 1].window;
  return n;
}

static void write_summary(FILE *f) {
  fprintf(f, "{\"in\":%llu,\"out\":%llu,\"rejected\":%llu,\"windows\":%llu,\"groups\":%llu,\"window_ms\":%lld,\"reasons\":{",
          (unsigned long long)n_in, (unsigned long long)n_out, (unsigned long long)n_rejected,
          (unsigned long long)count_windows(), (unsigned long long)n_groups, (long long)window_ms);
  int first = 1;
  for (size_t i = 0; i < N_REASONS; i++) {
    if (!reason_counts[i]) continue;
    fprintf(f, "%s\"%s\":%llu", first ? "" : ",", REASONS[i], (unsigned long long)reason_counts[i]);
    first = 0;
  }
  fputs("}}\n", f);
}

static void usage(const char *why) {
  die(EXIT_USAGE, "%s%s\nusage: event-transform [--input FILE] [--window-seconds N] [--reference FILE] [--out DIR]", why, "");
}

int main(int argc, char **argv) {
  const char *input = NULL, *reference = "/ref/devices.json";
  snprintf(out_dir, sizeof out_dir, "%s", "/agg");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage("missing value after an option");
    if (strcmp(a, "--input") == 0) input = argv[++i];
    else if (strcmp(a, "--reference") == 0) reference = argv[++i];
    else if (strcmp(a, "--out") == 0) snprintf(out_dir, sizeof out_dir, "%s", argv[++i]);
    else if (strcmp(a, "--window-seconds") == 0) {
      char *end;
      long s = strtol(argv[++i], &end, 10);
      if (*end || s < 1 || s > 86400) usage("--window-seconds must be an integer from 1 to 86400");
      window_ms = (int64_t)s * 1000;
    } else usage("unknown option");
  }
  load_reference(reference, "reference");

  char path[1200];
  snprintf(path, sizeof path, "%s/summary.json", out_dir);
  FILE *probe = fopen(path, "rb");
  if (probe) die(EXIT_CANTCREAT, "aggregate state is not empty (%s exists): bind a fresh state%s", path, "");
  snprintf(path, sizeof path, "%s/rejects.jsonl", out_dir);
  if (!(rejects = fopen(path, "wb")))
    die(EXIT_CANTCREAT, "aggregate state missing: slot 'aggregates' has no writable %s (%s)", out_dir, strerror(errno));

  FILE *in = stdin;
  if (input && !(in = fopen(input, "rb"))) die(EXIT_NOINPUT, "cannot open input %s: %s", input, strerror(errno));
  static char out_buf[1 << 16];
  setvbuf(stdout, out_buf, _IOFBF, sizeof out_buf);

  char *stack = alloc_bytes(MAX_LINE_BYTES);
  char *line = alloc_bytes(MAX_LINE_BYTES);
  size_t len = 0;
  int too_long = 0;
  uint64_t lineno = 0;
  static char buf[1 << 16];
  size_t r;
  while ((r = fread(buf, 1, sizeof buf, in)) > 0) {
    for (size_t i = 0; i < r; i++) {
      char c = buf[i];
      if (c != '\n') {
        if (len < MAX_LINE_BYTES) line[len++] = c;
        else too_long = 1;
        continue;
      }
      lineno++;
      if (too_long) { n_in++; n_rejected++; reject(lineno, "line_too_long"); }
      else process_line(line, len, lineno, stack);
      len = 0;
      too_long = 0;
    }
  }
  if (ferror(in)) die(EXIT_IOERR, "cannot read the input: %s%s", strerror(errno), "");
  if (len > 0 || too_long) {
    lineno++;
    if (too_long) { n_in++; n_rejected++; reject(lineno, "line_too_long"); }
    else process_line(line, len, lineno, stack);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) write_failed("stdout");
  close_written(rejects, "rejects.jsonl");
  write_windows();
  snprintf(path, sizeof path, "%s/summary.json", out_dir);
  FILE *s = fopen(path, "wb");
  if (!s) write_failed("summary.json");
  write_summary(s);
  close_written(s, "summary.json");
  write_summary(stderr);
  return 0;
}
