package main

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// freeCores estimates how many cores are idle now, measured over a short
// window from /proc/stat; at least 1. More llama.cpp threads than free cores
// collapses decode speed on a shared machine.
func freeCores() int {
	n := runtime.NumCPU()
	idle0, total0, ok0 := cpuTimes()
	time.Sleep(200 * time.Millisecond)
	idle1, total1, ok1 := cpuTimes()
	if !ok0 || !ok1 || total1 <= total0 {
		return max(1, n)
	}
	idleFrac := float64(idle1-idle0) / float64(total1-total0)
	free := int(idleFrac*float64(n) + 0.25) // a core ≥75% idle counts as free
	return min(max(free, 1), n)
}

func cpuTimes() (idle, total uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, s := range fields[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return idle, total, true
}
