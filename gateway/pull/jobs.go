package pull

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Puller runs pulls in the background for the admin API, one per file at a time,
// and remembers the latest ones.
type Puller struct {
	// Options are every pull's (SHA256 and Progress are each pull's own).
	Options Options
	// Context ends the pulls (the gateway stopping): they stop, resumable.
	Context context.Context

	mu   sync.Mutex
	seq  int
	jobs []*Job
}

// Job is a pull and how far it got.
type Job struct {
	ID       string
	Source   string
	Name     string
	Status   string // "downloading", "done", "failed"
	Bytes    int64
	Total    int64 // 0: unknown
	SHA256   string
	Resumed  bool
	Error    string
	Started  time.Time
	Finished time.Time
}

// Job statuses.
const (
	JobDownloading = "downloading"
	JobDone        = "done"
	JobFailed      = "failed"
)

// keptJobs bounds how many finished pulls are remembered; maxRunning, how many run at
// once.
const (
	keptJobs   = 50
	maxRunning = 2
)

// ErrBusy: the same file is being pulled already.
var ErrBusy = fmt.Errorf("already being pulled")

// Start checks src (see Resolve) and sum, and pulls the file in the background.
func (p *Puller) Start(src, sum string) (Job, error) {
	s, err := Resolve(src, p.Options.HFEndpoint)
	if err != nil {
		return Job{}, err
	}
	if sum != "" && sum != SkipVerify && !hexSHA256.MatchString(sum) {
		return Job{}, fmt.Errorf("the SHA-256 must be 64 hex characters (or %q to skip the check)", SkipVerify)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	running := 0
	for _, j := range p.jobs {
		if j.Status != JobDownloading {
			continue
		}
		if j.Name == s.Name {
			return Job{}, fmt.Errorf("%s: %w (pull %s)", s.Name, ErrBusy, j.ID)
		}
		running++
	}
	if running >= maxRunning {
		// Each checks the free space alone: more at once could fill the disk together.
		return Job{}, fmt.Errorf("%w: %d pulls are running, the most at once", ErrBusy, running)
	}
	p.seq++
	shown := src // an hf: name holds no secret
	if !s.HF {
		shown = s.Shown()
	}
	j := &Job{ID: fmt.Sprintf("pull-%d", p.seq), Source: shown, Name: s.Name, Status: JobDownloading, Started: time.Now()}
	p.jobs = append(p.jobs, j)
	// The oldest finished pulls are forgotten; running ones never.
	for i := 0; len(p.jobs) > keptJobs && i < len(p.jobs); {
		if p.jobs[i].Status != JobDownloading {
			p.jobs = slices.Delete(p.jobs, i, i+1)
			continue
		}
		i++
	}
	opts := p.Options
	opts.SHA256 = sum
	opts.Progress = func(done, total int64) {
		p.mu.Lock()
		j.Bytes, j.Total = done, total
		p.mu.Unlock()
	}
	ctx := p.Context
	if ctx == nil {
		ctx = context.Background()
	}
	go func() {
		res, err := Pull(ctx, src, opts)
		p.mu.Lock()
		defer p.mu.Unlock()
		j.Finished = time.Now()
		if err != nil {
			// Said without the models directory's path (the server's, not the caller's).
			j.Status, j.Error = JobFailed, strings.ReplaceAll(err.Error(), opts.Dir+string(filepath.Separator), "")
			return
		}
		j.Status, j.Bytes, j.SHA256, j.Resumed = JobDone, res.Bytes, res.SHA256, res.Resumed
		if j.Total == 0 {
			j.Total = res.Bytes
		}
	}()
	return *j, nil
}

// Jobs returns the pulls remembered, newest first.
func (p *Puller) Jobs() []Job {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Job, len(p.jobs))
	for i, j := range p.jobs {
		out[len(p.jobs)-1-i] = *j
	}
	return out
}
