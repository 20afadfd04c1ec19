/* One layer of models.intnet.IntNet on AVX2, skipping the inputs that are zero.
 *
 * A layer takes int8 inputs q (rows, k) and int8 weights w (k, n) and needs the exact
 * sums s = q @ w, which it rescales as IntNet does in float32, one IEEE operation at a
 * time: t = (float)s * multiplier + offset; a hidden layer outputs floor(min(max(t,
 * -128), 127)) as int8, the last one t.
 *
 * Most inputs are zero activations, q = -128 (a ReLU's zero less IntNet's zero point
 * 128), or zero pixels. So each row sums over its inputs that are not -128 the products
 * (q + 128) w, and s is that sum less 128 times the column's sum of weights
 * (`bias128`); or, where fewer of its inputs are not 0, over those the products q w.
 * Two such inputs at a time go through vpmaddwd (16-bit products, summed in pairs into
 * int32), the two weight rows interleaved as it needs them. The sums are exact in int32
 * (at most 1024 x 255 x 127 < 2^31) and s is below 2^24 (1024 x 128 x 127), so float32
 * holds it exactly.
 *
 * The rescaling uses no FMA (the code below has none, and contraction is off), so every
 * machine with AVX2 gets the same bits as IntNet's other kernels.
 *
 * Weights come from models.intnet.SparseAVX2.prepare: int16, in panels of 32 columns
 * (k, 32), the columns of each half in the order 0-3, 8-11, 4-7, 12-15 that the
 * interleaving puts back in order; the per-column multiplier and offset float32 and
 * bias128 int32, n rounded up to 32. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,bmi,popcnt")))
#define WIDTH 32        /* columns of a block: four vectors of 8 */
#define GROUP 64        /* rows whose nonzero inputs are listed at a time */

/* The inputs of row q (k of them) that are not `zero`: their indices, and their values
 * less `zero` in pairs (the first of each pair in the low half), an odd one out paired
 * with input 0 at value 0. Returns the number of pairs. */
AVX2 static int nonzero(const int8_t *q, int k, int8_t zero, int32_t *index, int16_t *value)
{
    int count = 0, j = 0;
    __m256i z = _mm256_set1_epi8(zero);
    for (; j + 32 <= k; j += 32) {
        uint32_t mask = ~(uint32_t)_mm256_movemask_epi8(
            _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(q + j)), z));
        while (mask) {
            int b = __builtin_ctz(mask);
            index[count] = j + b;
            value[count++] = (int16_t)(q[j + b] - zero);
            mask &= mask - 1;
        }
    }
    for (; j < k; j++)
        if (q[j] != zero) {
            index[count] = j;
            value[count++] = (int16_t)(q[j] - zero);
        }
    if (count % 2) {
        index[count] = 0;
        value[count++] = 0;
    }
    return count / 2;
}

AVX2 static int count_not(const int8_t *q, int k, int8_t zero)
{
    int count = 0, j = 0;
    __m256i z = _mm256_set1_epi8(zero);
    for (; j + 32 <= k; j += 32)
        count += 32 - __builtin_popcount((uint32_t)_mm256_movemask_epi8(
            _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(q + j)), z)));
    for (; j < k; j++)
        count += q[j] != zero;
    return count;
}

/* The int32 sums of one row over its pairs of inputs for the WIDTH columns of a panel. */
AVX2 static inline void sums(const int32_t *index, const int16_t *value, int pairs, const int16_t *w, __m256i out[4])
{
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < pairs; i++) {
        const int16_t *r = w + index[2 * i] * WIDTH, *s = w + index[2 * i + 1] * WIDTH;
        int32_t pair;
        memcpy(&pair, value + 2 * i, 4);
        __m256i x = _mm256_set1_epi32(pair);
        __m256i r0 = _mm256_loadu_si256((const __m256i *)r), r1 = _mm256_loadu_si256((const __m256i *)(r + 16));
        __m256i s0 = _mm256_loadu_si256((const __m256i *)s), s1 = _mm256_loadu_si256((const __m256i *)(s + 16));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(x, _mm256_unpacklo_epi16(r0, s0)));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(x, _mm256_unpackhi_epi16(r0, s0)));
        a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(x, _mm256_unpacklo_epi16(r1, s1)));
        a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(x, _mm256_unpackhi_epi16(r1, s1)));
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}

typedef struct {
    const int8_t *q;
    Py_ssize_t rows, k, n, stride; /* stride: n rounded up to WIDTH */
    const int16_t *w;
    const float *multiplier, *offset;
    const int32_t *bias128;
    void *out;
    int last;
    int32_t *index; /* GROUP x (k + 1) */
    int16_t *value;
    int count[GROUP], shifted[GROUP];
} Layer;

/* The rescaled outputs of one row for the block at column c, from its sums. */
AVX2 static void store(const Layer *L, Py_ssize_t row, Py_ssize_t c, __m256i s[4], int shifted)
{
    float t[WIDTH];
    __m256 lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
    for (int v = 0; v < 4; v++) {
        __m256i sum = s[v];
        if (shifted)
            sum = _mm256_sub_epi32(sum, _mm256_loadu_si256((const __m256i *)(L->bias128 + c + 8 * v)));
        __m256 x = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_loadu_ps(L->multiplier + c + 8 * v));
        x = _mm256_add_ps(x, _mm256_loadu_ps(L->offset + c + 8 * v));
        if (!L->last)
            x = _mm256_floor_ps(_mm256_min_ps(_mm256_max_ps(x, lo), hi));
        _mm256_storeu_ps(t + 8 * v, x);
    }
    Py_ssize_t width = L->n - c < WIDTH ? L->n - c : WIDTH;
    if (L->last) {
        memcpy((float *)L->out + row * L->n + c, t, sizeof(float) * width);
        return;
    }
    /* int8 of the four vectors, in order (the packs work within 128-bit lanes) */
    __m256i i01 = _mm256_packs_epi32(_mm256_cvtps_epi32(_mm256_loadu_ps(t)), _mm256_cvtps_epi32(_mm256_loadu_ps(t + 8)));
    __m256i i23 = _mm256_packs_epi32(_mm256_cvtps_epi32(_mm256_loadu_ps(t + 16)),
                                     _mm256_cvtps_epi32(_mm256_loadu_ps(t + 24)));
    __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(i01, i23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    int8_t *o = (int8_t *)L->out + row * L->n + c;
    if (width == WIDTH) {
        _mm256_storeu_si256((__m256i *)o, b);
    } else {
        int8_t bytes[WIDTH];
        _mm256_storeu_si256((__m256i *)bytes, b);
        memcpy(o, bytes, width);
    }
}

AVX2 static void layer(Layer *L)
{
    int k = (int)L->k;
    for (Py_ssize_t r0 = 0; r0 < L->rows; r0 += GROUP) {
        int m = L->rows - r0 < GROUP ? (int)(L->rows - r0) : GROUP;
        for (int r = 0; r < m; r++) {
            const int8_t *q = L->q + (r0 + r) * L->k;
            L->shifted[r] = count_not(q, k, -128) < count_not(q, k, 0);
            L->count[r] = nonzero(q, k, L->shifted[r] ? -128 : 0, L->index + r * (L->k + 1), L->value + r * (L->k + 1));
        }
        for (Py_ssize_t c = 0; c < L->n; c += WIDTH)
            for (int r = 0; r < m; r++) {
                __m256i s[4];
                sums(L->index + r * (L->k + 1), L->value + r * (L->k + 1), L->count[r], L->w + c * L->k, s);
                store(L, r0 + r, c, s, L->shifted[r]);
            }
    }
}

static int need(Py_buffer *b, Py_ssize_t bytes, const char *what)
{
    if (b->len < bytes) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, %zd needed", what, b->len, bytes);
        return 0;
    }
    return 1;
}

/* layer(q, rows, k, w, n, multiplier, offset, bias128, out, last), as described above;
 * out is (rows, n) int8, or float32 where last. */
static PyObject *py_layer(PyObject *self, PyObject *args)
{
    Py_buffer q, w, mult, off, b128, out;
    Layer L;
    if (!PyArg_ParseTuple(args, "y*nny*ny*y*y*w*p", &q, &L.rows, &L.k, &w, &L.n, &mult, &off, &b128, &out, &L.last))
        return NULL;
    PyObject *result = NULL;
    L.stride = (L.n + WIDTH - 1) / WIDTH * WIDTH;
    L.index = NULL;
    L.value = NULL;
    if (L.rows < 0 || L.k < 1 || L.k > 1024 || L.n < 1) {
        PyErr_SetString(PyExc_ValueError, "bad shape");
        goto done;
    }
    if (!need(&q, L.rows * L.k, "q") || !need(&w, 2 * L.k * L.stride, "weights")
        || !need(&mult, 4 * L.stride, "multiplier") || !need(&off, 4 * L.stride, "offset")
        || !need(&b128, 4 * L.stride, "bias128") || !need(&out, L.rows * L.n * (L.last ? 4 : 1), "out"))
        goto done;
    L.index = PyMem_RawMalloc(sizeof(int32_t) * GROUP * (L.k + 1));
    L.value = PyMem_RawMalloc(sizeof(int16_t) * GROUP * (L.k + 1));
    if (!L.index || !L.value) {
        PyErr_NoMemory();
        goto done;
    }
    L.q = q.buf;
    L.w = w.buf;
    L.multiplier = mult.buf;
    L.offset = off.buf;
    L.bias128 = b128.buf;
    L.out = out.buf;
    Py_BEGIN_ALLOW_THREADS
    layer(&L);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(L.index);
    PyMem_RawFree(L.value);
    PyBuffer_Release(&q);
    PyBuffer_Release(&w);
    PyBuffer_Release(&mult);
    PyBuffer_Release(&off);
    PyBuffer_Release(&b128);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *py_available(PyObject *self, PyObject *args)
{
    __builtin_cpu_init();
    return PyBool_FromLong(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi")
                           && __builtin_cpu_supports("popcnt"));
}

static PyMethodDef methods[] = {
    {"layer", py_layer, METH_VARARGS, "One IntNet layer on AVX2, skipping zero inputs (see the source)."},
    {"available", py_available, METH_NOARGS, "Whether this CPU can run layer()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_intmm", "IntNet layers on AVX2.", -1, methods};

PyMODINIT_FUNC PyInit__intmm(void) { return PyModule_Create(&module); }
