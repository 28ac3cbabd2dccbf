/**
 * Registry host names: the name users write (docker.io) versus the host the API lives on
 * (registry-1.docker.io), and which hosts count as loopback (plain http allowed without flags, like docker).
 */
import { isIP } from 'node:net';

export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_API = 'registry-1.docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** Splits `host[:port]` / `[v6]:port`; lower-cases the host part (DNS names are case-insensitive). */
export function splitHostPort(host: string): { hostname: string; port?: string } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (m) return m[2] === undefined ? { hostname: m[1]!.toLowerCase() } : { hostname: m[1]!.toLowerCase(), port: m[2] };
  const i = host.lastIndexOf(':');
  // A bare IPv6 literal has several colons and no port.
  if (i > 0 && host.indexOf(':') === i) return { hostname: host.slice(0, i).toLowerCase(), port: host.slice(i + 1) };
  return { hostname: host.toLowerCase() };
}

/** The name credentials and messages use: every Docker Hub alias becomes `docker.io`. */
export function normalizeRegistryHost(host: string): string {
  const h = host.trim().toLowerCase();
  return DOCKER_HUB_ALIASES.has(h) ? DOCKER_HUB : h;
}

/** The `host[:port]` to send API requests to. */
export function apiHost(host: string): string {
  return normalizeRegistryHost(host) === DOCKER_HUB ? DOCKER_HUB_API : host;
}

export function isLoopbackHost(host: string): boolean {
  const { hostname } = splitHostPort(host);
  if (hostname === 'localhost' || hostname.endsWith('.localhost')) return true;
  if (isIP(hostname) === 4) return hostname.startsWith('127.');
  if (isIP(hostname) === 6) return hostname === '::1' || hostname === '0:0:0:0:0:0:0:1';
  return false;
}

/** `host` as it goes into a URL (IPv6 literals need brackets). */
export function urlHost(host: string): string {
  const { hostname, port } = splitHostPort(host);
  const h = isIP(hostname) === 6 ? `[${hostname}]` : hostname;
  return port === undefined ? h : `${h}:${port}`;
}
