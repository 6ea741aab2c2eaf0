/** The inbound rates of the XMPP listener options, applied to s2s streams too. */
export interface RateLimits {
  inboundBytesPerSecond: number;
  inboundStanzasPerSecond: number;
  inboundBurstSeconds: number;
  inboundThrottleLimitMs: number;
}

/**
 * Token buckets for bytes and stanzas per second read from one peer (as the
 * c2s streams have, connection.ts): `spend` says how long reading should
 * pause (0: go on), or 'over' once the peer has wanted more than its rate
 * without a break for inboundThrottleLimitMs (then policy-violation).
 */
export class InboundThrottle {
  private bytes: number;
  private stanzas: number;
  private at = Date.now();
  private since = 0;
  private readonly r: RateLimits;

  constructor(r: RateLimits) {
    this.r = r;
    this.bytes = r.inboundBytesPerSecond * r.inboundBurstSeconds;
    this.stanzas = r.inboundStanzasPerSecond * r.inboundBurstSeconds;
  }

  spend(bytes: number, stanzas: number): number | 'over' {
    const r = this.r;
    const now = Date.now();
    const dt = (now - this.at) / 1000;
    this.at = now;
    let wait = 0;
    if (r.inboundBytesPerSecond > 0) {
      const cap = r.inboundBytesPerSecond * r.inboundBurstSeconds;
      this.bytes = Math.min(cap, this.bytes + dt * r.inboundBytesPerSecond) - bytes;
      if (this.bytes < 0) wait = Math.max(wait, -this.bytes / r.inboundBytesPerSecond);
    }
    if (r.inboundStanzasPerSecond > 0) {
      const cap = r.inboundStanzasPerSecond * r.inboundBurstSeconds;
      this.stanzas = Math.min(cap, this.stanzas + dt * r.inboundStanzasPerSecond) - stanzas;
      if (this.stanzas < 0) wait = Math.max(wait, -this.stanzas / r.inboundStanzasPerSecond);
    }
    if (wait <= 0) {
      this.since = 0;
      return 0;
    }
    this.since ||= now;
    if (r.inboundThrottleLimitMs > 0 && now - this.since > r.inboundThrottleLimitMs) return 'over';
    return Math.ceil(wait * 1000);
  }
}
