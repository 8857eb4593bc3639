import { countTokens, decode, encode, getTokenizer, GPT2_EOT } from '../../lib/tokenizer';

describe('tokenizer', () => {
  test('gpt2 round-trips text and counts tokens', () => {
    const text = 'Call me Ishmael. Some years ago—never mind how long precisely.\n\nÜber naïve café 🐋';
    const ids = encode(text, 'gpt2');
    expect(ids).toBeInstanceOf(Int32Array);
    expect(decode(ids, 'gpt2')).toBe(text);
    expect(countTokens(text, 'gpt2')).toBe(ids.length);
    expect(Array.from(encode('Hello world'))).toEqual([15496, 995]);
  });

  test('gpt2 handles <|endoftext|> anywhere (gpt-tokenizer 4.0 bug worked around)', () => {
    const ids = Array.from(encode('a<|endoftext|>b<|endoftext|><|endoftext|>c', 'gpt2'));
    expect(ids.filter((t) => t === GPT2_EOT).length).toBe(3);
    expect(ids[0]).toBe(Array.from(encode('a'))[0]);
    expect(decode(ids, 'gpt2')).toBe('a<|endoftext|>b<|endoftext|><|endoftext|>c');
    expect(countTokens('x<|endoftext|>y', 'gpt2')).toBe(3);
    // other special-looking text is plain text
    expect(() => encode('<|im_start|>', 'gpt2')).not.toThrow();
  });

  test('byte tokenizer is UTF-8 bytes', () => {
    const ids = encode('hé', 'byte');
    expect(Array.from(ids)).toEqual([104, 0xc3, 0xa9]);
    expect(decode(ids, 'byte')).toBe('hé');
    expect(countTokens('hé<|endoftext|>', 'byte')).toBe(16);
    expect(getTokenizer('byte').vocabSize).toBe(256);
    expect(getTokenizer('byte').eot).toBeNull();
  });

  test('bad input has clear messages', () => {
    expect(() => decode([300], 'byte')).toThrow('Expected token ids between 0 and 255 (the byte tokenizer) for tokens[0] but received 300 (number)');
    expect(() => decode([50257], 'gpt2')).toThrow(/between 0 and 50256/);
    expect(() => encode(5 as unknown as string)).toThrow('Expected a string for text but received 5 (number)');
    expect(() => getTokenizer('gpt3' as never)).toThrow(/Expected one of "gpt2", "byte" for tokenizer but received "gpt3" \(string\) \(did you mean "gpt2"\?\)/);
  });
});
