/**
 * A small bounded LRU map (Map keeps insertion order; a hit moves the entry to the end).
 * Bounded by entry count and, optionally, by a total weight (e.g. keys held), so a few huge
 * entries cannot grow it without limit. An entry heavier than the whole budget is not stored.
 */
export class LruCache<K, V> {
  private readonly map = new Map<K, { value: V; weight: number }>();
  private totalWeight = 0;

  constructor(
    private readonly capacity: number,
    private readonly maxWeight = Infinity,
    private readonly weigh: (value: V) => number = () => 1,
  ) {}

  get(key: K): V | undefined {
    const entry = this.map.get(key);
    if (entry === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, entry);
    return entry.value;
  }

  set(key: K, value: V): void {
    this.delete(key);
    const weight = this.weigh(value);
    if (weight > this.maxWeight) return;
    this.map.set(key, { value, weight });
    this.totalWeight += weight;
    while (this.map.size > this.capacity || this.totalWeight > this.maxWeight) {
      const oldest = this.map.keys().next();
      if (oldest.done === true) break;
      this.delete(oldest.value);
    }
  }

  delete(key: K): void {
    const entry = this.map.get(key);
    if (entry === undefined) return;
    this.map.delete(key);
    this.totalWeight -= entry.weight;
  }

  get size(): number {
    return this.map.size;
  }

  get weight(): number {
    return this.totalWeight;
  }
}
