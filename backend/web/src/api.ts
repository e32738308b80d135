/** The operator API over fetch: bearer token, idempotency keys, errors in words. */

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public details?: unknown,
  ) {
    super(message);
  }
  /** The form field this error is about, if the API says or the message names one. */
  field(candidates: string[]): string | undefined {
    const d = this.details as { field?: string } | undefined;
    if (d && typeof d.field === "string") return d.field;
    const text = this.message.toLowerCase();
    return candidates.find((c) => text.includes(c.toLowerCase()));
  }
}

const TOKEN_KEY = "muster.token";

/** The token: from the address's fragment (`#token=…`, which the browser never sends to a
 * server; taken out of the address at once and kept in local storage), else the kept one. */
export function token(): string | null {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    localStorage.setItem(TOKEN_KEY, fromUrl);
    const url = new URL(location.href);
    url.hash = "";
    history.replaceState(null, "", url.toString());
    return fromUrl;
  }
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string) {
  localStorage.setItem(TOKEN_KEY, t);
}

export function newKey(): string {
  if (typeof crypto !== "undefined" && "randomUUID" in crypto) return crypto.randomUUID();
  return "k-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token() ?? ""}` };
  if (method !== "GET") {
    headers["Idempotency-Key"] = newKey();
    headers["Content-Type"] = "application/json";
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "unreachable", "the server cannot be reached; check the connection and try again");
  }
  const text = await res.text();
  let json: any = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    /* not JSON */
  }
  if (!res.ok) {
    const e = json?.error;
    throw new ApiError(res.status, e?.code ?? "http_" + res.status, e?.message ?? `the server answered ${res.status}`, e?.details);
  }
  return json as T;
}
