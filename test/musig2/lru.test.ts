/** The bounded LRU behind the musig2 caches: recency, entry bound and weight bound. */
import { describe, expect, it } from 'vitest';
import { LruCache } from '../../src/musig2/lru.js';

describe('LruCache', () => {
  it('evicts the least recently used entry beyond its capacity', () => {
    const c = new LruCache<string, number>(2);
    c.set('a', 1);
    c.set('b', 2);
    expect(c.get('a')).toBe(1); // 'a' is now the most recent
    c.set('c', 3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    expect(c.get('c')).toBe(3);
    expect(c.size).toBe(2);
  });

  it('keeps the total weight within budget and refuses an entry heavier than the budget', () => {
    const c = new LruCache<string, number[]>(100, 10, (v) => v.length);
    c.set('six', [1, 2, 3, 4, 5, 6]);
    c.set('three', [1, 2, 3]);
    expect(c.weight).toBe(9);
    c.set('four', [1, 2, 3, 4]); // 13 > 10: the oldest ('six') goes
    expect(c.get('six')).toBeUndefined();
    expect(c.weight).toBe(7);
    c.set('huge', new Array<number>(11).fill(0));
    expect(c.get('huge')).toBeUndefined();
    expect(c.weight).toBe(7);
    // Replacing an entry replaces its weight.
    c.set('three', [1]);
    expect(c.weight).toBe(5);
    expect(c.size).toBe(2);
  });
});
