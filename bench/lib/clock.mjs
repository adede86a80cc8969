// CLOCK_MONOTONIC in µs: the same clock in every process of the machine, so
// a send time written by one generator process can be compared with the
// receipt time in another.
export function nowUs() {
    const t = process.hrtime();
    return t[0] * 1e6 + t[1] / 1e3;
}
