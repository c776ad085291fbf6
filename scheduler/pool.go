package scheduler

import "container/list"

// pool is the workers of one platform and the tasks waiting for them.
// Tasks wait in one FIFO queue per invocation (build); pop serves the
// invocations round-robin, so one large build cannot starve a small one.
type pool struct {
	platform Platform
	queues   map[string]*list.List // invocation id → FIFO of *task
	order    []string              // invocations with waiting tasks, in turn order
	next     int                   // index in order of the next invocation to serve
	queued   int
	workers  map[string]*worker
	// served is set once a worker of this platform has connected: from
	// then on the pool's tasks wait for workers instead of failing.
	served bool
}

func newPool(p Platform) *pool {
	return &pool{platform: p, queues: map[string]*list.List{}, workers: map[string]*worker{}}
}

// push queues t at the back of its invocation's queue, or at the front when
// it is being retried (it already waited its turn once).
func (p *pool) push(t *task, front bool) {
	q := p.queues[t.invocation]
	if q == nil {
		q = list.New()
		p.queues[t.invocation] = q
		p.order = append(p.order, t.invocation)
	}
	if front {
		t.elem = q.PushFront(t)
	} else {
		t.elem = q.PushBack(t)
	}
	p.queued++
}

// pop returns the next task in round-robin order, or nil.
func (p *pool) pop() *task {
	if len(p.order) == 0 {
		return nil
	}
	p.next %= len(p.order)
	inv := p.order[p.next]
	q := p.queues[inv]
	t := q.Remove(q.Front()).(*task)
	t.elem = nil
	p.queued--
	if q.Len() == 0 {
		p.dropInvocation(p.next)
	} else {
		p.next++
	}
	return t
}

// remove takes a queued task out of its queue.
func (p *pool) remove(t *task) {
	q := p.queues[t.invocation]
	if q == nil || t.elem == nil {
		return
	}
	q.Remove(t.elem)
	t.elem = nil
	p.queued--
	if q.Len() == 0 {
		for i, inv := range p.order {
			if inv == t.invocation {
				p.dropInvocation(i)
				break
			}
		}
	}
}

func (p *pool) dropInvocation(i int) {
	delete(p.queues, p.order[i])
	p.order = append(p.order[:i], p.order[i+1:]...)
	if p.next > i {
		p.next--
	}
}

// all returns every queued task, for failing them.
func (p *pool) all() []*task {
	var out []*task
	for _, inv := range p.order {
		for el := p.queues[inv].Front(); el != nil; el = el.Next() {
			out = append(out, el.Value.(*task))
		}
	}
	return out
}
