/* models.grids.ExactColumns on AVX2 with FMA: an MLP over columns, one column per pixel.
 *
 * The input columns are gathered from a table of rows of n values: input r of column
 * i n + j is table[rows[r, i], j]. Each layer is out = A @ h + b in float64, A (rows,
 * cols) and h (cols, m); between layers
 * the outputs are clipped to [0, limit] and rounded to integers (half to even, as
 * np.rint). On ExactColumns' grids every product and every partial sum is exact in
 * float64, so a fused multiply-add gives the same bits as numpy's separate product and
 * sum, in any order: this kernel gives what numpy gives, on any machine.
 *
 * The columns go through in blocks that stay in cache, gathered into a buffer first; the
 * sums of four rows for twelve columns at a time are held in registers, starting from
 * the bias. The matrices' rows (and biases) come padded to a multiple of four (zeros),
 * their columns to the padded rows of the layer before. */
#include <string.h>
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <immintrin.h>
#include <math.h>

#define KERNEL __attribute__((target("avx2,fma")))
#define COLUMNS 12 /* columns whose sums for four rows are held in registers */
#define BLOCK (21 * COLUMNS) /* columns of a block */
#define LAYERS 8

typedef struct {
    const double *a, *bias;
    Py_ssize_t rows, cols;
} Matrix;

/* out (A->rows, w; row stride ldo) = A @ h (A->cols, w; row stride ldh) + bias, for w <=
 * BLOCK columns; `hidden`: clipped to [0, limit] and rounded. */
KERNEL static void product(const Matrix *A, const double *h, Py_ssize_t ldh, double *out, Py_ssize_t ldo,
                           Py_ssize_t w, int hidden, double limit)
{
    const __m256d zero = _mm256_setzero_pd(), top = _mm256_set1_pd(limit);
    Py_ssize_t k = A->cols, vectors = w / COLUMNS * COLUMNS;
    for (Py_ssize_t r = 0; r < A->rows; r += 4) {
        const double *a = A->a + r * k, *bias = A->bias + r;
        for (Py_ssize_t c = 0; c < vectors; c += COLUMNS) {
            __m256d acc[4][COLUMNS / 4];
            for (int i = 0; i < 4; i++)
                for (int v = 0; v < COLUMNS / 4; v++)
                    acc[i][v] = _mm256_broadcast_sd(bias + i);
            for (Py_ssize_t j = 0; j < k; j++) {
                __m256d x[COLUMNS / 4];
                for (int v = 0; v < COLUMNS / 4; v++)
                    x[v] = _mm256_loadu_pd(h + j * ldh + c + 4 * v);
                for (int i = 0; i < 4; i++) {
                    __m256d b = _mm256_broadcast_sd(a + i * k + j);
                    for (int v = 0; v < COLUMNS / 4; v++)
                        acc[i][v] = _mm256_fmadd_pd(b, x[v], acc[i][v]);
                }
            }
            for (int i = 0; i < 4; i++)
                for (int v = 0; v < COLUMNS / 4; v++) {
                    __m256d y = acc[i][v];
                    if (hidden)
                        y = _mm256_round_pd(_mm256_min_pd(_mm256_max_pd(y, zero), top),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    _mm256_storeu_pd(out + (r + i) * ldo + c + 4 * v, y);
                }
        }
        for (Py_ssize_t c = vectors; c < w; c++)
            for (int i = 0; i < 4; i++) {
                double y = bias[i];
                for (Py_ssize_t j = 0; j < k; j++)
                    y = fma(a[i * k + j], h[j * ldh + c], y);
                out[(r + i) * ldo + c] = hidden ? nearbyint(fmin(fmax(y, 0), limit)) : y;
            }
    }
}

typedef struct {
    const double *table;
    const long long *rows;
    double *out, *input, *buffers[2];
    Py_ssize_t n, k, m;
    int layers;
    Matrix A[LAYERS];
    double limit;
} Network;

/* The input columns start .. start + w - 1 into N->input (inputs, BLOCK). */
static void gather(const Network *N, Py_ssize_t start, Py_ssize_t w)
{
    for (Py_ssize_t r = 0; r < N->A[0].cols; r++) {
        const long long *rows = N->rows + r * N->k;
        for (Py_ssize_t c = start; c < start + w;) {
            Py_ssize_t i = c / N->n, j = c - i * N->n;
            Py_ssize_t run = N->n - j < start + w - c ? N->n - j : start + w - c;
            memcpy(N->input + r * BLOCK + c - start, N->table + rows[i] * N->n + j, sizeof(double) * run);
            c += run;
        }
    }
}

KERNEL static void run(Network *N)
{
    for (Py_ssize_t start = 0; start < N->m; start += BLOCK) {
        Py_ssize_t w = N->m - start < BLOCK ? N->m - start : BLOCK;
        gather(N, start, w);
        const double *h = N->input;
        Py_ssize_t ldh = BLOCK;
        for (int l = 0; l < N->layers; l++) {
            int last = l == N->layers - 1;
            double *out = last ? N->out + start : N->buffers[l % 2];
            product(&N->A[l], h, ldh, out, last ? N->m : BLOCK, w, !last, N->limit);
            h = out;
            ldh = BLOCK;
        }
    }
}

/* mlp(table, n, rows, layers, limit, out): table (R, n) float64, rows (inputs, k) int64
 * in 0..R-1, layers a sequence of (A, bias, rows, cols), out (rows of the last, k n) float64. */
static PyObject *py_mlp(PyObject *self, PyObject *args)
{
    Py_buffer table, rows, out, a[LAYERS], b[LAYERS];
    PyObject *layers;
    Network N = {0};
    int held = 0;
    if (!PyArg_ParseTuple(args, "y*ny*Odw*", &table, &N.n, &rows, &layers, &N.limit, &out))
        return NULL;
    PyObject *result = NULL;
    PyObject *seq = PySequence_Fast(layers, "layers must be a sequence");
    if (!seq)
        goto done;
    N.layers = (int)PySequence_Fast_GET_SIZE(seq);
    if (N.layers < 1 || N.layers > LAYERS) {
        PyErr_SetString(PyExc_ValueError, "bad number of layers");
        goto done;
    }
    Py_ssize_t widest = 0;
    for (int l = 0; l < N.layers; l++) {
        Matrix *A = &N.A[l];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, l), "y*y*nn", &a[l], &b[l], &A->rows, &A->cols))
            goto done;
        held = l + 1;
        A->a = a[l].buf;
        A->bias = b[l].buf;
        if (A->rows < 4 || A->rows % 4 || A->cols < 1 || (l && A->cols != N.A[l - 1].rows) ||
            a[l].len < 8 * A->rows * A->cols || b[l].len < 8 * A->rows) {
            PyErr_SetString(PyExc_ValueError, "bad layer shape");
            goto done;
        }
        if (A->rows > widest)
            widest = A->rows;
    }
    Py_ssize_t inputs = N.A[0].cols, entries = inputs > 0 ? rows.len / 8 : 0;
    N.k = entries / inputs;
    N.m = N.k * N.n;
    Py_ssize_t table_rows = N.n > 0 ? table.len / 8 / N.n : 0;
    if (N.n < 1 || entries != inputs * N.k || out.len < 8 * N.A[N.layers - 1].rows * N.m) {
        PyErr_SetString(PyExc_ValueError, "bad input or output size");
        goto done;
    }
    N.rows = rows.buf;
    for (Py_ssize_t e = 0; e < entries; e++)
        if (N.rows[e] < 0 || N.rows[e] >= table_rows) {
            PyErr_SetString(PyExc_IndexError, "a row outside the table");
            goto done;
        }
    N.table = table.buf;
    N.out = out.buf;
    N.input = PyMem_RawMalloc(sizeof(double) * inputs * BLOCK);
    N.buffers[0] = PyMem_RawMalloc(sizeof(double) * widest * BLOCK);
    N.buffers[1] = PyMem_RawMalloc(sizeof(double) * widest * BLOCK);
    if (!N.input || !N.buffers[0] || !N.buffers[1]) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    run(&N);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyMem_RawFree(N.input);
    PyMem_RawFree(N.buffers[0]);
    PyMem_RawFree(N.buffers[1]);
    for (int l = 0; l < held; l++) {
        PyBuffer_Release(&a[l]);
        PyBuffer_Release(&b[l]);
    }
    Py_XDECREF(seq);
    PyBuffer_Release(&table);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *py_available(PyObject *self, PyObject *args)
{
    __builtin_cpu_init();
    return PyBool_FromLong(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
}

static PyMethodDef methods[] = {
    {"mlp", py_mlp, METH_VARARGS, "models.grids.ExactColumns' MLP on AVX2 with FMA (see the source)."},
    {"available", py_available, METH_NOARGS, "Whether this CPU can run mlp()."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_heads", "Exact pixel heads on AVX2.", -1, methods};

PyMODINIT_FUNC PyInit__heads(void) { return PyModule_Create(&module); }
