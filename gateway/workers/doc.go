// Package workers runs the model backends: for each configured model a pool
// of replicas, each replica one plugin process owned by a supervisor
// goroutine, and a dispatcher that sends each request to a ready replica: the one
// that was sent the longest beginning of its prompt (a conversation's history, a
// shared system prompt: its prompt cache likely holds it; see affinity.go) unless
// it has more than two outstanding requests more than the least busy one and the
// beginning is shorter than 512 estimated tokens, else the one with the fewest (models[].dispatch: least_loaded always takes that one). It is
// the gateway's equivalent of FastChat's controller, in process.
//
// Supervisors restart crashed plugins with exponential backoff and mark a
// crash-looping replica failed. The dispatcher queues requests when every
// replica is at max_concurrency (bounded by max_queue and the queue
// timeout), and retries a request whose replica died before its first event
// reached the caller, once: the retry runs alone on its replica. A request
// during which two replicas died is a poison request (ErrPoisonRequest): it
// is not retried again, it is logged by a short hash (never its text), and
// the same request is refused at once for a while (the quarantine), so that
// one input that crashes a backend cannot keep a shared model down.
//
// It does not speak HTTP and knows nothing of OpenAI shapes: see package api.
package workers
