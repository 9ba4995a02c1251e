// Package workers runs the model backends: for each configured model a pool
// of replicas, each replica one plugin process owned by a supervisor
// goroutine, and a dispatcher that sends each request to the ready replica
// with the fewest outstanding requests. It is the gateway's equivalent of
// FastChat's controller, in process.
//
// Supervisors restart crashed plugins with exponential backoff and mark a
// crash-looping replica failed. The dispatcher queues requests when every
// replica is at max_concurrency (bounded by max_queue and the queue
// timeout), and retries a request whose replica died before its first event
// reached the caller.
//
// It does not speak HTTP and knows nothing of OpenAI shapes: see package api.
package workers
