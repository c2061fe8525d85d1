/* sys.c - signals that recover from faults, fork and pipes, threads, mmap, and the string
 * functions glibc picks by CPUID. */
#include "battery.h"
#include <fenv.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static sigjmp_buf env;
static volatile int got_sig, got_code;
static volatile long got_trapno, got_err;
static void *volatile got_addr;

static void handler(int sig, siginfo_t *si, void *ctx) {
  ucontext_t *uc = ctx;
  got_sig = sig;
  got_code = si->si_code;
  got_addr = si->si_addr;
  got_trapno = uc->uc_mcontext.gregs[REG_TRAPNO];
  got_err = uc->uc_mcontext.gregs[REG_ERR];
  siglongjmp(env, 1);
}

/* runs f; prints the signal it raised with si_code, the trap number and error code, and where
 * si_addr is relative to `expect` */
static void fault(const char *key, void (*f)(void *), void *arg, void *expect) {
  got_sig = got_code = 0;
  got_addr = NULL;
  got_trapno = got_err = -1;
  if (sigsetjmp(env, 1) == 0) {
    f(arg);
    out(key, "no signal");
    return;
  }
  out(key, "sig=%d code=%d trapno=%ld err=%ld addr=%s%ld", got_sig, got_code, got_trapno, got_err,
      expect ? "expected+" : "", (long)((char *)got_addr - (char *)expect));
}

static void f_write(void *p) { *(volatile int *)p = 1; }
static void f_read(void *p) { (void)*(volatile int *)p; }
static void f_ud2(void *p) { (void)p; __asm__ volatile("ud2"); }
static void f_int3(void *p) { (void)p; __asm__ volatile("int3"); }
static void f_divzero(void *p) { volatile int z = 0; *(volatile int *)p = 5 / z; }
static void f_divover(void *p) { volatile int m = -2147483647 - 1, n = -1; *(volatile int *)p = m / n; }
__attribute__((target("sse2"))) static void f_movaps(void *p) { __asm__ volatile("movaps (%0), %%xmm0" : : "r"((char *)p + 4) : "xmm0"); }
__attribute__((target("sse2"))) static void f_ssediv(void *p) {
  (void)p;
  unsigned m = 0x1f80 & ~0x200u; /* zero-divide unmasked */
  volatile double z = 0, one = 1;
  __asm__ volatile("ldmxcsr %0" : : "m"(m));
  __asm__ volatile("movsd %1, %%xmm0; divsd %2, %%xmm0; movsd %%xmm0, %0" : "=m"(z) : "m"(one), "m"(z) : "xmm0");
}
static void f_x87div(void *p) {
  (void)p;
  unsigned short cw = 0x037f & ~0x4;
  volatile long double z = 0, one = 1, r;
  __asm__ volatile("fldcw %0" : : "m"(cw));
  r = one / z;
  __asm__ volatile("fwait");
  (void)r;
}
#ifdef __x86_64__
static void f_noncanon(void *p) { (void)p; (void)*(volatile long *)0x8000000000001000UL; }
static void f_cx16(void *p) {
  unsigned long lo = 0, hi = 0;
  __asm__ volatile("lock cmpxchg16b (%2)" : "+a"(lo), "+d"(hi) : "r"((char *)p + 8), "b"(0L), "c"(0L) : "memory", "cc");
}
#endif

static volatile int usr1_round;
static void on_usr1(int sig) {
  (void)sig;
  /* a handler that changes the FP environment: it is restored by sigreturn */
  fesetround(FE_TOWARDZERO);
  volatile long double x = 1.0L / 3;
  volatile double y = 2.0 / 3;
  usr1_round = fegetround() == FE_TOWARDZERO && x > 0 && y > 0;
}

void t_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  sigaction(SIGILL, &sa, NULL);
  sigaction(SIGFPE, &sa, NULL);
  sigaction(SIGTRAP, &sa, NULL);
  long pg = sysconf(_SC_PAGESIZE);
  char *p = mmap(NULL, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { out("signals.mmap", "failed"); return; }
  memset(p, 0x11, 3 * pg);
  mprotect(p + pg, pg, PROT_READ);
  munmap(p + 2 * pg, pg);
  fault("signals.write_ro", f_write, p + pg + 100, p + pg + 100);
  out("signals.write_ro.after", "%02x", (unsigned char)p[pg + 100]);
  fault("signals.read_unmapped", f_read, p + 2 * pg + 8, p + 2 * pg + 8);
  fault("signals.read_null", f_read, NULL, NULL);
  fault("signals.ud2", f_ud2, NULL, (void *)f_ud2);
  fault("signals.int3", f_int3, NULL, NULL);
  fault("signals.divzero", f_divzero, p, (void *)f_divzero);
  fault("signals.divover", f_divover, p, (void *)f_divover);
  fault("signals.movaps", f_movaps, p, NULL);
  /* QEMU 7.2 TCG raises no SIMD floating-point exception (#XM): compared with the host */
  fault("signals.ssediv.hostref", f_ssediv, NULL, (void *)f_ssediv);
  /* x87 exceptions are raised by the next waiting instruction (the store after fdiv on CPUs, a
   * later one on QEMU 7.2 TCG): compared with the host */
  fault("signals.x87div.hostref", f_x87div, NULL, (void *)f_x87div);
  /* the handler ran with the FPU in its initial state; siglongjmp leaves it so */
  unsigned mx; unsigned short cw;
  __asm__ volatile("stmxcsr %0; fnstcw %1" : "=m"(mx), "=m"(cw));
  out("signals.fpu_after", "mxcsr=%04x cw=%04x", mx, cw);
#ifdef __x86_64__
  fault("signals.noncanonical", f_noncanon, NULL, NULL);
  if (F.cx16) fault("signals.cx16misaligned", f_cx16, p, NULL);
#endif
  /* from here on a fault ends the section (the jump buffer belongs to a frame that returned) */
  signal(SIGSEGV, SIG_DFL); signal(SIGBUS, SIG_DFL); signal(SIGILL, SIG_DFL); signal(SIGFPE, SIG_DFL);
  signal(SIGTRAP, SIG_DFL);
  /* a handler that changes the FP environment leaves the interrupted code's untouched */
  fesetround(FE_UPWARD);
  signal(SIGUSR1, on_usr1);
  volatile double third = 1.0;
  raise(SIGUSR1);
  third /= 3;
  out("signals.fpstate", "handler=%d round_after=%d %a", usr1_round, fegetround() == FE_UPWARD, third);
  fesetround(FE_TONEAREST);
  /* a signal mask survives siglongjmp */
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR2);
  sigprocmask(SIG_BLOCK, &s, NULL);
  raise(SIGUSR2);
  sigpending(&s);
  out("signals.pending", "%d", sigismember(&s, SIGUSR2));
  signal(SIGUSR2, SIG_IGN);
}

void t_fork(void) {
  int fds[2];
  if (pipe(fds) != 0) { out("fork.pipe", "failed"); return; }
  for (int i = 0; i < 3; i++) {
    pid_t p = fork();
    if (p == 0) {
      char buf[128];
      long double x = 1;
      for (int j = 0; j <= i * 10; j++) x = x * 1.1L + j;
      int n = snprintf(buf, sizeof buf, "child%d %La\n", i, x);
      if (write(fds[1], buf, n) != n) _exit(1);
      _exit(40 + i);
    }
    int st;
    waitpid(p, &st, 0);
    char k[32];
    snprintf(k, sizeof k, "fork.child%d", i);
    out(k, "exited=%d status=%d", WIFEXITED(st), WEXITSTATUS(st));
  }
  close(fds[1]);
  char buf[512] = "";
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  for (char *l = buf; n > 0 && *l;) {
    char *e = strchr(l, '\n');
    if (!e) break;
    *e = 0;
    out("fork.read", "%s", l);
    l = e + 1;
  }
  /* one megabyte through a pipe from a child, checksummed on both sides */
  if (pipe(fds) != 0) return;
  pid_t p = fork();
  if (p == 0) {
    close(fds[0]);
    rnd_seed("pipe");
    uint64_t h = FNV0;
    for (int i = 0; i < 1024; i++) {
      uint64_t blk[128];
      for (int j = 0; j < 128; j++) blk[j] = rnd();
      h = fnv(h, blk, sizeof blk);
      if (write(fds[1], blk, sizeof blk) != sizeof blk) _exit(1);
    }
    _exit(h % 200);
  }
  close(fds[1]);
  uint64_t h = FNV0;
  long total = 0;
  char blk[4096];
  while ((n = read(fds[0], blk, sizeof blk)) > 0) { h = fnv(h, blk, n); total += n; }
  int st;
  waitpid(p, &st, 0);
  out("fork.bigpipe", "bytes=%ld hash=%016llx child_agrees=%d", total, (unsigned long long)h,
      WIFEXITED(st) && WEXITSTATUS(st) == (int)(h % 200));
}

static long counter_atomic, counter_mutex, counter_cas;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void *worker(void *arg) {
  (void)arg;
  for (int i = 0; i < 100000; i++) {
    __atomic_fetch_add(&counter_atomic, 1, __ATOMIC_SEQ_CST);
    long old = __atomic_load_n(&counter_cas, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&counter_cas, &old, old + 2, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {}
    if (i % 4 == 0) { pthread_mutex_lock(&mu); counter_mutex++; pthread_mutex_unlock(&mu); }
  }
  return NULL;
}

void t_threads(void) {
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  out("threads.counters", "atomic=%ld cas=%ld mutex=%ld", counter_atomic, counter_cas, counter_mutex);
}

void t_mmap(void) {
  long pg = sysconf(_SC_PAGESIZE);
  int n = 64;
  unsigned char *p = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { out("mmap.anon", "failed"); return; }
  for (long i = 0; i < n * pg; i++) p[i] = (unsigned char)(i * 7 + i / pg);
  out("mmap.anon", "%016llx", (unsigned long long)fnv(FNV0, p, n * pg));
  int r1 = mprotect(p + 8 * pg, 8 * pg, PROT_READ);
  uint64_t h = fnv(FNV0, p + 8 * pg, 8 * pg);
  int r2 = madvise(p + 20 * pg, 4 * pg, MADV_DONTNEED);
  int zero = 1;
  for (long i = 20 * pg; i < 24 * pg; i++) zero &= p[i] == 0;
  int r3 = munmap(p + 32 * pg, 32 * pg);
  unsigned char *q = mremap(p, 8 * pg, 80 * pg, MREMAP_MAYMOVE);
  int kept = q != MAP_FAILED && q[5 * pg + 3] == (unsigned char)(5 * pg * 7 + 3 * 7 + 5);
  for (int round = 0; round < 200 && q != MAP_FAILED; round++) { /* map and unmap many times */
    unsigned char *t = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) break;
    t[round % (4 * pg)] = (unsigned char)round;
    h = fnv(h, &t[round % (4 * pg)], 1);
    munmap(t, 4 * pg);
  }
  out("mmap.ops", "mprotect=%d ro_hash=%016llx dontneed=%d zeroed=%d munmap=%d mremap_kept=%d", r1,
      (unsigned long long)h, r2, zero, r3, kept);
  /* a shared file mapping seen through read() */
  char path[] = "/tmp/battery-mmap-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) { out("mmap.file", "no temp file"); return; }
  unlink(path);
  if (ftruncate(fd, 4 * pg) != 0) { out("mmap.file", "ftruncate failed"); return; }
  char *f = mmap(NULL, 4 * pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (f == MAP_FAILED) { out("mmap.file", "mmap failed"); return; }
  for (long i = 0; i < 4 * pg; i++) f[i] = (char)('a' + i % 26);
  msync(f, 4 * pg, MS_SYNC);
  char buf[64];
  ssize_t got = pread(fd, buf, sizeof buf, 3 * pg + 5);
  out("mmap.file", "read=%zd %.10s", got, buf);
}

void t_string(void) {
  long pg = sysconf(_SC_PAGESIZE);
  /* two pages, the second inaccessible: strings end right at the boundary */
  char *m = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) { out("string.mmap", "failed"); return; }
  mprotect(m + pg, pg, PROT_NONE);
  static char src[1200], dst[1200];
  rnd_seed("string");
  for (int i = 0; i < 1200; i++) src[i] = (char)("abcdefgh\x80\xff"[rnd() % 10]);
  uint64_t hc = FNV0, hl = FNV0, hch = FNV0, hcm = FNV0, hmv = FNV0, hs = FNV0;
  for (int len = 0; len < 300; len += 1 + len / 16) {
    for (int sa = 0; sa < 16; sa++) {
      int da = (sa * 7 + len) % 16;
      memset(dst, 0, sizeof dst);
      memcpy(dst + da, src + sa, len);
      hc = fnv(hc, dst, 350);
      memmove(dst + da + 3, dst + da, len); /* overlapping forward */
      memmove(dst + da, dst + da + 5, len); /* overlapping backward */
      hmv = fnv(hmv, dst, 350);
      dst[da + len] = 0;
      size_t l = strlen(dst + da);
      char *c = strchr(dst + da, 'h'), *rc = strrchr(dst + da, 'a');
      char *mc = memchr(dst + da, '\xff', len);
      long v[4] = {(long)l, c ? c - dst : -1, rc ? rc - dst : -1, mc ? mc - dst : -1};
      hl = fnv(hl, v, sizeof v);
      memcpy(dst + 600, dst + da, len + 1);
      if (len) dst[600 + (len * 5 + sa) % len] ^= (char)(sa & 1 ? 1 : 0x80);
      int cm[4] = {memcmp(dst + da, dst + 600, len) > 0, memcmp(dst + da, dst + 600, len) < 0,
                   strcmp(dst + da, dst + 600) > 0, strncmp(dst + da, dst + 600, len / 2) == 0};
      hcm = fnv(hcm, cm, sizeof cm);
      /* at the page's end */
      char *e = m + pg - len - 1;
      memcpy(e, src + sa, len);
      e[len] = 0;
      long w[4] = {(long)strlen(e), strchr(e, 'g') ? strchr(e, 'g') - e : -1, (long)strspn(e, "abcd"),
                   strstr(e, "ab") ? strstr(e, "ab") - e : -1};
      hch = fnv(hch, w, sizeof w);
      memset(dst, sa, len);
      hs = fnv(hs, dst, 320);
    }
  }
  out("string.memcpy", "%016llx", (unsigned long long)hc);
  out("string.memmove", "%016llx", (unsigned long long)hmv);
  out("string.strlen_chr", "%016llx", (unsigned long long)hl);
  out("string.cmp", "%016llx", (unsigned long long)hcm);
  out("string.pageend", "%016llx", (unsigned long long)hch);
  out("string.memset", "%016llx", (unsigned long long)hs);
}
